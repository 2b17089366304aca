"""Stage 07: LayerNorm, the MLP, the transformer block, and the whole GPT.

Everything from the earlier stages comes together here. A GPT is:

    token embedding + position embedding          (B, T) ids -> (B, T, C) vectors
    n_layer blocks, each:
        x = x + attention(ln_1(x))                tokens talk to earlier tokens
        x = x + mlp(ln_2(x))                      each token thinks on its own
    a final LayerNorm, then a linear head         (B, T, C) -> (B, T, vocab_size) logits

You write LayerNorm from scratch, the MLP, the pre-norm residual block, and the GPT that
chains them, with its loss and its sampling loop. The attention is your own
`CausalSelfAttention` from stage 06. The names (`transformer.wte`, `h.0.ln_1`,
`mlp.c_fc`, `lm_head`, ...) are GPT-2's, so in stage 08 the same model can load the
weights OpenAI published.

Initialization: this stage keeps PyTorch's default init for every layer (LayerNorm starts
at gain 1 and bias 0). GPT-2's own init comes in stage 08.

Run this file for a quick demo: `python exercises/07_layernorm/gpt.py`. To train your
GPT on real text and read what it writes: `python -m grader train`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

if __name__ == "__main__":
    # Run as a script, this file finds the earlier stages in the folders beside its own
    # (the grader sets its own path when it grades, so this never changes a score).
    sys.path[1:1] = [str(Path(__file__).resolve().parent.parent / "06_multihead")]

from multihead import CausalSelfAttention  # noqa: E402  (your stage 06)


class LayerNorm(nn.Module):
    """Layer normalization over the last dimension, with a learnable gain and bias.

    Each vector `x[..., :]` (one token's features) is shifted to mean 0 and scaled to
    variance 1 on its own, then multiplied by `weight` and shifted by `bias`:

        y = (x - mean) / sqrt(var + eps) * weight + bias

    where mean and var are taken over the last dimension only, and var is the biased
    (population) variance: divide by C, not C - 1.

    Args:
        ndim: C, the size of the last dimension.
        eps: added to the variance inside the square root, so a constant vector does not
            divide by zero.
        bias: whether to learn a bias. GPT-2 has one; some later models drop it.
    Attributes:
        weight: nn.Parameter of shape (C,), starting at ones.
        bias: nn.Parameter of shape (C,), starting at zeros, or None when bias=False.
    """

    def __init__(self, ndim: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        ### BEGIN SOLUTION
        # Hint: nn.Parameter(torch.ones(ndim)) makes a tensor the optimizer will train.
        #   Keep eps for forward. With bias=False, set self.bias = None.
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., C) float tensor -> a tensor of the same shape and dtype."""
        ### BEGIN SOLUTION
        # Hint: mean and variance over dim=-1 with keepdim=True, so they broadcast back
        #   over C; x.var(..., unbiased=False) is the biased variance.
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        out = x_hat * self.weight
        if self.bias is not None:
            out = out + self.bias
        return out
        ### END SOLUTION


class MLP(nn.Module):
    """The feed-forward part of a block: widen to 4*C, apply GELU, project back to C.

    Args:
        n_embd: C.
        dropout: probability for the dropout after the output projection.
        bias: whether the two linear layers have biases.
    Submodules (GPT-2's names): c_fc = nn.Linear(C, 4*C), an exact GELU (nn.GELU()),
    c_proj = nn.Linear(4*C, C), and nn.Dropout(dropout).
    """

    def __init__(self, n_embd: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        ### BEGIN SOLUTION
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) float32 -> (B, T, C) float32: dropout(c_proj(gelu(c_fc(x))))."""
        ### BEGIN SOLUTION
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))
        ### END SOLUTION


class Block(nn.Module):
    """One transformer block, pre-norm: normalize, transform, add back to the residual.

        x = x + attn(ln_1(x))
        x = x + mlp(ln_2(x))

    Args:
        n_embd, n_head, block_size, dropout, bias: as for CausalSelfAttention (stage 06);
            n_embd and bias also size the two LayerNorms and the MLP.
    Submodules: ln_1 (LayerNorm), attn (CausalSelfAttention), ln_2 (LayerNorm), mlp (MLP).
    """

    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        ### BEGIN SOLUTION
        self.ln_1 = LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, dropout=dropout, bias=bias)
        self.ln_2 = LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout=dropout, bias=bias)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) float32 -> (B, T, C) float32."""
        ### BEGIN SOLUTION
        # Hint: the LayerNorm goes inside each branch; the residual stream x itself is
        #   never normalized in a block.
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x
        ### END SOLUTION


@dataclass
class GPTConfig:
    """The sizes of a GPT. `GPT(GPTConfig(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128))`."""

    block_size: int  # the longest context the model reads: T <= block_size
    vocab_size: int  # V: token ids are in [0, V)
    n_layer: int  # number of blocks
    n_head: int  # attention heads per block; must divide n_embd
    n_embd: int  # C, the width of the residual stream
    dropout: float = 0.0
    bias: bool = True  # biases in the Linear layers and LayerNorms


class GPT(nn.Module):
    """A GPT language model with GPT-2's module names.

    Submodules:
        transformer.wte   nn.Embedding(vocab_size, n_embd): token embeddings
        transformer.wpe   nn.Embedding(block_size, n_embd): position embeddings
        transformer.drop  nn.Dropout(dropout), applied to the sum of the two
        transformer.h     nn.ModuleList of n_layer Blocks
        transformer.ln_f  LayerNorm(n_embd), the final normalization
        lm_head           nn.Linear(n_embd, vocab_size, bias=False)
    `self.config` keeps the GPTConfig.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        ### BEGIN SOLUTION
        # Hint: nn.ModuleDict(dict(wte=..., wpe=..., drop=..., h=nn.ModuleList([...]), ln_f=...)).
        #   An nn.ModuleList (not a Python list) registers the blocks' parameters.
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(
                    [
                        Block(config.n_embd, config.n_head, config.block_size, config.dropout, config.bias)
                        for _ in range(config.n_layer)
                    ]
                ),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        ### END SOLUTION

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits for the next token at every position, and the loss when targets are given.

        Args:
            idx: (B, T) int64 token ids in [0, vocab_size), with T <= block_size.
            targets: (B, T) int64, the token that follows each position of idx, or None.
        Returns:
            (logits, loss): logits of shape (B, T, vocab_size), float32; loss is the mean
            cross-entropy over all B*T positions as a 0-dim tensor, or None without targets.
        Raises:
            ValueError, naming block_size, when T > block_size.
        """
        ### BEGIN SOLUTION
        # Hint: positions are torch.arange(T, device=idx.device); the position embedding
        #   (T, C) broadcasts over the batch when added to the token embedding (B, T, C).
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(
                f"Cannot run a sequence of {T} tokens: the model's block_size is {self.config.block_size}. "
                "Crop the context to its last block_size tokens."
            )
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))
        return logits, loss
        ### END SOLUTION

    @torch.no_grad()
    def generate(
        self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None
    ) -> torch.Tensor:
        """Extend each row of `idx` (B, T) by `max_new_tokens` sampled tokens: (B, T + max_new_tokens) int64.

        The prompt may be longer than block_size: at each step, run the model on the last
        block_size tokens only. Take the logits at the last position, divide them by
        `temperature` (below 1: safer, above 1: wilder), keep only the `top_k` largest when
        top_k is given (the others get -inf), softmax, sample one token with
        torch.multinomial and append it. Call model.eval() first to switch dropout off.
        """
        ### BEGIN SOLUTION
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size :]
            logits, _ = self(context)
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                kth_largest = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits = logits.masked_fill(logits < kth_largest, float("-inf"))
            probs = F.softmax(logits, dim=-1)
            next_token = torch.multinomial(probs, num_samples=1)
            idx = torch.cat([idx, next_token], dim=1)
        return idx
        ### END SOLUTION


if __name__ == "__main__":
    import math

    from grader.data import char_corpus  # the course's corpus, one token per character

    corpus = char_corpus("fables")
    torch.manual_seed(0)
    config = GPTConfig(block_size=32, vocab_size=corpus.vocab_size, n_layer=2, n_head=4, n_embd=64)
    model = GPT(config)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(201):
        x, y = corpus.batch(16, config.block_size)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            note = f" (ln(V) = {math.log(corpus.vocab_size):.3f})" if step == 0 else ""
            print(f"step {step:3d}: loss {loss.item():.3f}{note}")
    model.eval()
    prompt = torch.tensor([corpus.encode("T")])
    sample = model.generate(prompt, max_new_tokens=120, temperature=0.8)
    print("sample:", corpus.decode(sample[0].tolist()))
    print("Train it properly on real text: python -m grader train")
