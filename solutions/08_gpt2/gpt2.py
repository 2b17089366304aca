"""Stage 08: GPT-2. Your stage 07 GPT, made into the model OpenAI trained.

The architecture does not change: GPT-2 small is your GPT with 12 blocks of 12 heads,
n_embd 768, a context of 1024 tokens and the 50257 tokens of its byte-level BPE. What
makes it GPT-2 is what happens around the forward pass:

    weight tying         the token embedding and the output head are ONE tensor
    initialization       normal(0, 0.02) for weights and embeddings, zero biases, and the
                         projections that write into the residual stream scaled down by
                         1 / sqrt(2 * n_layer)
    parameter count      exactly 124,439,808 for the default (124M) configuration
    optimizer groups     weight decay on matrices and embeddings only, fused AdamW on CUDA
    sampling             temperature, top-k and greedy decoding, with an optional generator
    loading OpenAI's     a HuggingFace GPT2LMHeadModel state dict, whose four Conv1D weight
    weights              matrices are stored transposed

`GPT2` subclasses your `GPT` (stage 07): `transformer.wte`, `transformer.wpe`,
`transformer.drop`, `transformer.h[i]` (Blocks: ln_1, attn, ln_2, mlp), `transformer.ln_f`
and `lm_head` are built there, and so is `forward`. Stage 09 builds its fast training loop
on this class.

Run this file for a quick demo: `python exercises/08_gpt2/gpt2.py`.
"""
from __future__ import annotations

import inspect
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

if __name__ == "__main__":
    # Run as a script, this file finds the earlier stages in the folders beside its own
    # (the grader sets its own path when it grades, so this never changes a score).
    here = Path(__file__).resolve().parent.parent
    sys.path[1:1] = [str(here / "07_layernorm"), str(here / "06_multihead")]

from gpt import GPT  # noqa: E402  (your stage 07)

# The four weight matrices that GPT-2's original code (and HuggingFace's GPT2 classes) keep
# in Conv1D modules. A Conv1D stores its weight as (in_features, out_features), the
# transpose of nn.Linear's (out_features, in_features).
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass
class GPT2Config:
    """The sizes of a GPT-2. The defaults are GPT-2 small, the "124M" model."""

    block_size: int = 1024  # the longest context: T <= block_size
    vocab_size: int = 50257  # 50,000 BPE merges + 256 byte tokens + <|endoftext|>
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in the Linear layers and LayerNorms, as in GPT-2


class GPT2(GPT):
    """Your stage 07 GPT with GPT-2's weight tying and initialization, optimizer groups,
    sampling and weight loading.

    After construction:
        self.lm_head.weight is self.transformer.wte.weight    (one nn.Parameter, not a copy)
        every nn.Linear and nn.Embedding weight ~ normal(0, 0.02), every Linear bias = 0,
        the two residual projections of each block (attn.c_proj.weight and
        mlp.c_proj.weight) ~ normal(0, 0.02 / sqrt(2 * n_layer)),
        LayerNorm gains 1 and biases 0, as stage 07 made them.
    `forward(idx, targets=None) -> (logits, loss)` is stage 07's, unchanged: logits
    (B, T, vocab_size) float32, loss the mean cross-entropy over all B*T positions or None.
    """

    def __init__(self, config: GPT2Config):
        super().__init__(config)  # stage 07 builds transformer.{wte, wpe, drop, h, ln_f} and lm_head
        ### BEGIN SOLUTION
        # Hint: tie first: make lm_head's weight and wte's weight the same nn.Parameter object
        #   (one assignment). Then self.apply(self._init_weights) visits every module, and a
        #   loop over self.named_parameters() rescales the weights whose names end in
        #   'c_proj.weight'.
        # Tie the output head to the token embedding. Both are (vocab_size, n_embd): row i of
        # wte is the vector that token i is read as, and the same row scores how much the
        # model wants to write token i next. One tensor saves 38.6M parameters in GPT-2 small
        # and gradients from both uses train it.
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # Each block adds to the residual stream twice (attention, then MLP). The variance
        # of a sum of 2 * n_layer independent contributions grows with their number;
        # shrinking each projection by 1/sqrt(2 * n_layer) keeps the stream's scale the same
        # however deep the model is.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        ### END SOLUTION

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2's init for one module (called by self.apply for every submodule).

        nn.Linear: weight ~ normal(0, 0.02), bias (if any) = 0.
        nn.Embedding: weight ~ normal(0, 0.02).
        Anything else (LayerNorm, Dropout, containers): left as it is.
        """
        ### BEGIN SOLUTION
        # Hint: isinstance(module, nn.Linear) / nn.Embedding; nn.init.normal_ and nn.init.zeros_
        #   work in place. LayerNorm keeps its ones and zeros.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        ### END SOLUTION

    def num_parameters(self) -> int:
        """The number of trainable numbers in the model: each parameter counted once.

        The tied wte/lm_head tensor counts once; buffers (the causal masks) are not
        parameters and do not count. For GPT2Config() this is 124,439,808.
        """
        ### BEGIN SOLUTION
        # Hint: self.parameters() yields each nn.Parameter once, even when two modules share it.
        return sum(p.numel() for p in self.parameters())
        ### END SOLUTION

    def configure_optimizers(
        self, weight_decay: float, learning_rate: float, betas=(0.9, 0.95), device_type: str = "cpu"
    ) -> torch.optim.AdamW:
        """An AdamW over every trainable parameter, in two groups.

        Group with weight_decay: every parameter with 2 or more dimensions (the Linear
        weight matrices and the embeddings). Group with weight_decay 0.0: every parameter
        with fewer (biases, LayerNorm gains and biases). Each parameter is in exactly one
        group, once. lr=learning_rate, betas=betas for both groups. With
        device_type == "cuda", and when this torch's AdamW accepts `fused`, pass fused=True.
        Returns the torch.optim.AdamW.
        """
        ### BEGIN SOLUTION
        # Hint: p.dim() >= 2 tells matrices from vectors. torch.optim.AdamW accepts a list of
        #   dicts: [{"params": [...], "weight_decay": wd}, {"params": [...], "weight_decay": 0.0}].
        #   "fused" in inspect.signature(torch.optim.AdamW).parameters tells whether it exists.
        params = [p for p in self.parameters() if p.requires_grad]
        # Decay pulls weights towards 0. That regularizes matrices and embeddings, but a
        # LayerNorm gain pulled towards 0 would switch its features off, and biases are too
        # few to overfit with.
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        # Fused AdamW updates all parameters in one kernel launch instead of several per
        # tensor: faster on a GPU, the same result.
        fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
        extra = {"fused": True} if fused else {}
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **extra)
        ### END SOLUTION

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend each row of idx (B, T) int64 by max_new_tokens tokens: (B, T + max_new_tokens) int64.

        At each step run the model on the last block_size tokens only and take the logits
        at the last position. temperature == 0 means greedy: append their argmax.
        Otherwise divide them by temperature, keep the top_k largest when top_k is given
        (the others become -inf), softmax, and draw one token with
        torch.multinomial(probs, 1, generator=generator), so that a seeded generator
        gives the same text every time. Call model.eval() first to switch dropout off.
        """
        ### BEGIN SOLUTION
        # Hint: stage 07's generate, plus the greedy branch and generator=generator.
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size :]
            logits, _ = self(context)
            logits = logits[:, -1, :]
            if temperature == 0:
                next_token = logits.argmax(dim=-1, keepdim=True)  # dividing by 0 would give inf and NaN
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth_largest = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth_largest, float("-inf"))
                probs = F.softmax(logits, dim=-1)
                next_token = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat([idx, next_token], dim=1)
        return idx
        ### END SOLUTION

    def load_hf_state_dict(self, state_dict: dict) -> None:
        """Copy the weights of a HuggingFace GPT2LMHeadModel (`hf_model.state_dict()`) into this model.

        The names are the same as ours. The four Conv1D weights (attn.c_attn, attn.c_proj,
        mlp.c_fc, mlp.c_proj, in every block) are stored as (in, out) and must be
        transposed, even attn.c_proj's, which is square. Keys ending in '.attn.bias' or
        '.attn.masked_bias' (HF's mask buffers, in older checkpoints) are not weights: skip
        them. Copy in place (under torch.no_grad()), so that the tied tensor stays one tensor.
        Raise a KeyError naming the key when a parameter of this model is missing from
        state_dict or state_dict has a weight this model lacks, and a ValueError when a
        shape does not match.
        """
        ### BEGIN SOLUTION
        # Hint: own = self.state_dict() gives tensors that share storage with the parameters;
        #   own[key].copy_(value) writes into them. key.endswith(CONV1D_WEIGHTS) finds the
        #   Conv1D weights; value.t() transposes.
        own = self.state_dict()
        theirs = {k: v for k, v in state_dict.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        missing = [k for k, _ in self.named_parameters() if k not in theirs]  # the tied tensor once
        unexpected = [k for k in theirs if k not in own]
        if missing or unexpected:
            raise KeyError(f"state_dict does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}")
        with torch.no_grad():
            for key, value in theirs.items():
                if key.endswith(CONV1D_WEIGHTS):
                    value = value.t()  # Conv1D (in, out) -> nn.Linear (out, in)
                if value.shape != own[key].shape:
                    raise ValueError(f"{key}: state_dict has shape {tuple(value.shape)}, this model {tuple(own[key].shape)}")
                own[key].copy_(value)
        ### END SOLUTION


if __name__ == "__main__":
    torch.manual_seed(0)

    # The 124M count, without allocating 124M numbers: on the meta device a tensor has a
    # shape and a dtype but no memory.
    with torch.device("meta"):
        big = GPT2(GPT2Config())
    print(f"GPT-2 small: {big.num_parameters():,} parameters (124,439,808 expected)")

    config = GPT2Config(block_size=32, vocab_size=65, n_layer=4, n_head=4, n_embd=64)
    model = GPT2(config)
    print("lm_head.weight is transformer.wte.weight:", model.lm_head.weight is model.transformer.wte.weight)
    std = model.transformer.h[0].mlp.c_proj.weight.std().item()
    print(f"mlp.c_proj.weight std {std:.4f} (0.02 / sqrt(2 * {config.n_layer}) = {0.02 / math.sqrt(8):.4f})")
    idx = torch.randint(0, config.vocab_size, (8, config.block_size))
    _, loss = model(idx, torch.randint(0, config.vocab_size, (8, config.block_size)))
    print(f"loss at init {loss.item():.4f}, ln(vocab_size) = {math.log(config.vocab_size):.4f}")

    optimizer = model.configure_optimizers(weight_decay=0.1, learning_rate=6e-4)
    for group in optimizer.param_groups:
        n = sum(p.numel() for p in group["params"])
        print(f"group with weight_decay={group['weight_decay']}: {len(group['params'])} tensors, {n:,} numbers")

    model.eval()
    prompt = idx[:1, :4]
    print("greedy:     ", model.generate(prompt, 10, temperature=0)[0, 4:].tolist())
    print("top_k=1:    ", model.generate(prompt, 10, top_k=1)[0, 4:].tolist())
    seeded = [model.generate(prompt, 10, generator=torch.Generator().manual_seed(7))[0, 4:].tolist() for _ in range(2)]
    print("seeded twice:", seeded[0], seeded[1])
