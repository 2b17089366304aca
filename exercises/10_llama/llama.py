"""Stage 10: Llama. RMSNorm, SwiGLU, rotary position embeddings, grouped-query attention, the KV cache.

A Llama is a GPT with five changes, each one a lesson:

    token embedding only                  no position table: positions enter through RoPE
    n_layers blocks, each:
        x = x + attention(attention_norm(x))     RMSNorm instead of LayerNorm
        x = x + feed_forward(ffn_norm(x))        SwiGLU instead of GELU
    a final RMSNorm, then an output head

    inside attention: queries and keys are rotated by their position (RoPE), and a few
    key/value heads serve all the query heads (grouped-query attention, GQA)

and, for generation, a KV cache: the keys and values of the tokens already seen are kept, so
each new token costs one position's work instead of a whole forward pass.

The module names are Meta's (`tok_embeddings`, `layers.0.attention.wq`, `feed_forward.w1`,
`norm`, `output`); `Llama.load_hf_state_dict` maps the Hugging Face names onto them, so the
grader can load a `transformers.LlamaForCausalLM`'s weights into your model and compare.

Run this file for a quick demo: `python exercises/10_llama/llama.py`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LlamaConfig:
    """The sizes of a Llama. `Llama(LlamaConfig(vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2))`."""

    vocab_size: int  # V: token ids are in [0, V)
    dim: int  # the width of the residual stream
    n_layers: int  # number of blocks
    n_heads: int  # query heads; must divide dim, and head_dim = dim // n_heads must be even
    n_kv_heads: int | None = None  # key/value heads; must divide n_heads. None: as many as n_heads
    hidden_dim: int | None = None  # the SwiGLU width. None: 8/3 * dim rounded up to multiple_of
    multiple_of: int = 32
    norm_eps: float = 1e-5  # eps of every RMSNorm
    rope_theta: float = 10000.0  # the base of RoPE's frequencies
    max_seq_len: int = 256  # the longest sequence (prompt + generated) the model accepts

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.hidden_dim is None:
            # Llama's rule: three matrices instead of two, so 2/3 of GPT's 4 * dim keeps the
            # parameter count; then round up to a multiple of multiple_of for fast matmuls.
            hidden = int(2 * 4 * self.dim / 3)
            self.hidden_dim = self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)
        if self.dim % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads={self.n_heads} must divide dim={self.dim}, and n_kv_heads={self.n_kv_heads} must divide n_heads."
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


class RMSNorm(nn.Module):
    """Root-mean-square normalization over the last dimension, with a learnable gain.

        y = x / sqrt(mean(x**2) + eps) * weight

    Unlike LayerNorm there is no mean subtraction and no bias: only the scale of each
    token's vector is normalized. The mean of the squares is over the last dimension.

    Args:
        dim: the size of the last dimension.
        eps: added to the mean of the squares, inside the square root.
    Attributes:
        weight: nn.Parameter of shape (dim,), starting at ones. No bias.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        raise NotImplementedError("Write this part of RMSNorm.__init__, then run the check again.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., dim) float tensor -> a tensor of the same shape and dtype."""
        # Hint: x.pow(2).mean(-1, keepdim=True) is the mean square; torch.rsqrt(a) is 1 / sqrt(a).
        raise NotImplementedError("Write this part of RMSNorm.forward, then run the check again.")


class FeedForward(nn.Module):
    """SwiGLU: a gated MLP. `w2(silu(w1(x)) * w3(x))`.

    w1 (the "gate") and w3 (the "up" projection) both widen dim -> hidden_dim; SiLU goes on
    the gate only, and the gate multiplies the up projection elementwise; w2 (the "down"
    projection) brings the product back to dim.

    Args:
        dim, hidden_dim: the widths.
    Submodules: w1 = nn.Linear(dim, hidden_dim), w3 = nn.Linear(dim, hidden_dim),
    w2 = nn.Linear(hidden_dim, dim), all without biases.
    """

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        raise NotImplementedError("Write this part of FeedForward.__init__, then run the check again.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., dim) -> (..., dim)."""
        raise NotImplementedError("Write this part of FeedForward.forward, then run the check again.")


def precompute_rope(head_dim: int, max_seq_len: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosine and sine tables of rotary position embeddings, in Hugging Face's layout.

    Dimension pair i (for i in [0, head_dim // 2)) turns at the frequency
    theta ** (-2i / head_dim) radians per position. Position m turns pair i by the angle
    m * theta ** (-2i / head_dim). The pairs are the two halves of the head: dimension i goes
    with dimension i + head_dim // 2, so each row of the tables holds the head_dim // 2 angles
    twice, one copy per half: cos[m] = cos(cat([angles, angles])).

    Returns:
        (cos, sin), each of shape (max_seq_len, head_dim), float32.
    Raises:
        ValueError, saying the head size must be even, when head_dim is odd (dimensions are
        rotated in pairs).
    """
    # Hint: torch.outer(positions, frequencies) gives every (position, pair) angle at once.
    raise NotImplementedError("Write this part of precompute_rope, then run the check again.")


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
    """Rotate each pair of dimensions of x by its position's angle.

    Args:
        x: (B, n_heads, T, head_dim): queries or keys. Never the values.
        cos, sin: the tables of precompute_rope, (max_seq_len, head_dim).
        start_pos: the position of x's first token: token t of x sits at position start_pos + t
            (when decoding with a cache, the new token is not at position 0).
    Returns:
        A tensor shaped and typed like x: with x1, x2 the first and second halves of the
        head dimension, out = x * cos + cat([-x2, x1]) * sin, using the rows
        start_pos .. start_pos + T - 1 of the tables.
    """
    raise NotImplementedError("Write this part of apply_rope, then run the check again.")


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, n_kv_heads, T, head_dim) -> (B, n_kv_heads * n_rep, T, head_dim).

    Key/value head j serves the contiguous group of query heads [j * n_rep, (j + 1) * n_rep),
    so each head is repeated n_rep times in place: heads [a, b] become [a, a, b, b], never
    [a, b, a, b].
    """
    raise NotImplementedError("Write this part of repeat_kv, then run the check again.")


class KVCache:
    """The keys and values of every layer for the positions already processed, preallocated.

    Args:
        n_layers, batch_size, n_kv_heads, max_seq_len, head_dim: the sizes.
        dtype, device: of the stored tensors.
    Attributes:
        k, v: tensors of shape (n_layers, batch_size, n_kv_heads, max_seq_len, head_dim),
            starting at zeros. Keys are stored after RoPE (rotated by their own position).
        length: how many positions are filled (0 at first).
    """

    def __init__(self, n_layers: int, batch_size: int, n_kv_heads: int, max_seq_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        raise NotImplementedError("Write this part of KVCache.__init__, then run the check again.")

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, start_pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, n_kv_heads, T, head_dim) at positions start_pos .. start_pos + T - 1 of layer `layer`.

        Returns:
            (keys, values): the layer's cached keys and values for positions 0 .. start_pos + T - 1,
            each (B, n_kv_heads, start_pos + T, head_dim): everything before, and the new ones.
        Sets `length` to start_pos + T.
        """
        raise NotImplementedError("Write this part of KVCache.update, then run the check again.")


class Attention(nn.Module):
    """Causal self-attention with RoPE on queries and keys and grouped-query attention.

    Args:
        dim, n_heads, n_kv_heads: head_dim = dim // n_heads; each of the n_kv_heads key/value
            heads serves n_heads // n_kv_heads consecutive query heads.
    Submodules (no biases): wq = nn.Linear(dim, n_heads * head_dim),
    wk = wv = nn.Linear(dim, n_kv_heads * head_dim) (two separate layers),
    wo = nn.Linear(n_heads * head_dim, dim).
    """

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int):
        super().__init__()
        raise NotImplementedError("Write this part of Attention.__init__, then run the check again.")

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos: int = 0,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """x: (B, T, dim), the tokens at positions start_pos .. start_pos + T - 1 -> (B, T, dim).

        cos, sin: precompute_rope's tables. Without a cache, the T tokens attend to each other
        causally. With a cache, the new keys and values are stored in layer `layer` of it
        first, and token t attends to every cached position <= start_pos + t.
        """
        # Hint: view(B, T, n_heads, head_dim).transpose(1, 2) for the heads, as in stage 06.
        #   Build the mask for T queries and S = start_pos + T keys: query t sees keys <= start_pos + t.
        raise NotImplementedError("Write this part of Attention.forward, then run the check again.")


class TransformerBlock(nn.Module):
    """Pre-norm block: `h = x + attention(attention_norm(x))`, then `h + feed_forward(ffn_norm(h))`.

    Submodules: attention_norm (RMSNorm), attention (Attention), ffn_norm (RMSNorm),
    feed_forward (FeedForward), sized by the LlamaConfig.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        raise NotImplementedError("Write this part of TransformerBlock.__init__, then run the check again.")

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos: int = 0,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """x: (B, T, dim) -> (B, T, dim); the other arguments go to the attention."""
        raise NotImplementedError("Write this part of TransformerBlock.forward, then run the check again.")


# Hugging Face's name for each parameter of one block, and ours.
HF_BLOCK_NAMES = {
    "self_attn.q_proj": "attention.wq",
    "self_attn.k_proj": "attention.wk",
    "self_attn.v_proj": "attention.wv",
    "self_attn.o_proj": "attention.wo",
    "mlp.gate_proj": "feed_forward.w1",
    "mlp.up_proj": "feed_forward.w3",
    "mlp.down_proj": "feed_forward.w2",
    "input_layernorm": "attention_norm",
    "post_attention_layernorm": "ffn_norm",
}


class Llama(nn.Module):
    """A Llama language model with Meta's module names.

    Submodules:
        tok_embeddings  nn.Embedding(vocab_size, dim)
        layers          nn.ModuleList of n_layers TransformerBlocks
        norm            RMSNorm(dim, norm_eps), the final normalization
        output          nn.Linear(dim, vocab_size, bias=False), not tied to tok_embeddings
    Buffers: rope_cos, rope_sin, precompute_rope(head_dim, max_seq_len, rope_theta), registered
    with persistent=False (they follow .to(device) but stay out of the state_dict).
    `self.config` keeps the LlamaConfig. Every layer keeps PyTorch's default initialization.

    Raises:
        ValueError, from precompute_rope, when head_dim is odd.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        raise NotImplementedError("Write this part of Llama.__init__, then run the check again.")

    def new_cache(self, batch_size: int) -> KVCache:
        """An empty KVCache sized for this model, on its device and in its dtype."""
        c = self.config
        weight = self.tok_embeddings.weight
        return KVCache(c.n_layers, batch_size, c.n_kv_heads, c.max_seq_len, c.head_dim, weight.dtype, weight.device)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
                start_pos: int = 0):
        """Logits for the next token at every position, and the loss when targets are given.

        Args:
            idx: (B, T) int64 token ids, at positions start_pos .. start_pos + T - 1.
            targets: (B, T) int64 or None.
            cache: a KVCache holding positions 0 .. start_pos - 1 (from earlier calls), or None.
                The new positions are added to it.
            start_pos: the position of idx[:, 0]. 0 for a full sequence or a prefill; the number
                of tokens already in the cache when decoding.
        Returns:
            (logits (B, T, vocab_size) float32, loss: mean cross-entropy as a 0-dim tensor or None).
        Raises:
            ValueError, naming max_seq_len, when start_pos + T > max_seq_len.
        """
        raise NotImplementedError("Write this part of Llama.forward, then run the check again.")

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, use_cache: bool = True,
                 temperature: float = 0.0) -> torch.Tensor:
        """Extend each row of idx (B, T) by max_new_tokens tokens: (B, T + max_new_tokens) int64.

        temperature 0 picks the most likely token (greedy, argmax); above 0, sample from
        softmax(logits / temperature) with torch.multinomial. With use_cache, run the prompt
        once (the prefill) into a new_cache, then feed only the newest token at each step, at
        its position; without, run the whole sequence at every step. Both give the same tokens.
        Raises ValueError, naming max_seq_len, when T + max_new_tokens > max_seq_len.
        """
        raise NotImplementedError("Write this part of Llama.generate, then run the check again.")

    def load_hf_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load the weights of a transformers LlamaForCausalLM (its `state_dict()`) into this model.

        Hugging Face -> ours: model.embed_tokens -> tok_embeddings, model.layers.{i}.self_attn.
        {q,k,v,o}_proj -> layers.{i}.attention.{wq,wk,wv,wo}, mlp.gate_proj -> feed_forward.w1,
        mlp.up_proj -> w3, mlp.down_proj -> w2, input_layernorm -> attention_norm,
        post_attention_layernorm -> ffn_norm, model.norm -> norm, lm_head -> output. Entries
        whose name ends in "rotary_emb.inv_freq" are ignored. Loads strictly: every parameter of
        this model must be set, with the same shape, and no HF entry may be left over.
        """
        # Hint: HF_BLOCK_NAMES (above) maps the names inside one block.
        raise NotImplementedError("Write this part of Llama.load_hf_state_dict, then run the check again.")


if __name__ == "__main__":
    import time

    from grader.data import char_corpus  # the course's corpus, one token per character

    corpus = char_corpus("fables")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=corpus.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=256)
    model = Llama(config)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for step in range(201):
        x, y = corpus.batch(16, 64)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            note = f" (ln(V) = {math.log(corpus.vocab_size):.3f})" if step == 0 else ""
            print(f"step {step:3d}: loss {loss.item():.3f}{note}")
    model.eval()
    prompt = torch.tensor([corpus.encode("T")])
    for use_cache in (False, True):
        start = time.perf_counter()
        out = model.generate(prompt, max_new_tokens=200, use_cache=use_cache)
        print(f"use_cache={use_cache}: {time.perf_counter() - start:.2f} s")
    print("sample:", corpus.decode(out[0].tolist()))
