"""Stage 06: batched multi-head causal self-attention, the way GPT-2 computes it.

In stage 05 one head looked at the past through one query, key and value per position.
Several smaller heads can look for different things at once: one follows the previous
token, another the subject of the sentence. Running them one after another in a Python
loop is slow, so here they run together:

    c_attn: one Linear makes q, k and v for every head at once     (B, T, C) -> (B, T, 3C)
    split the channels into heads                                  (B, T, C) -> (B, nh, T, hs)
    attention in each head, all heads in one batched matmul        (B, nh, T, T) weights
    put the heads side by side again                               (B, nh, T, hs) -> (B, T, C)
    c_proj: one Linear mixes what the heads found                  (B, T, C) -> (B, T, C)

with nh heads of hs = C // nh channels each. The names `c_attn` and `c_proj` are GPT-2's:
stage 07 builds its transformer block on this class, and stage 08 loads the weights
OpenAI published into it.

Run this file for a quick demo: `python exercises/06_multihead/multihead.py`.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention with a fused query/key/value projection.

    Args:
        n_embd: C, the width of each input and output vector.
        n_head: nh, the number of heads. Each head works on hs = n_embd // n_head channels,
            so n_embd must be divisible by n_head.
        block_size: the longest sequence (context length) the module accepts; the causal
            mask covers block_size positions.
        dropout: the probability of dropping each attention weight, and each output
            element, in train mode.
        bias: whether c_attn and c_proj have biases.

    Attributes (the grader finds them by these names):
        c_attn: nn.Linear(n_embd, 3 * n_embd, bias=bias). Its output holds q, k and v for all
            heads, in that order along the last dimension: channels [0, C) are the queries,
            [C, 2C) the keys, [2C, 3C) the values. Inside each, head h owns the channels
            [h * hs, (h + 1) * hs).
        c_proj: nn.Linear(n_embd, n_embd, bias=bias), applied after the heads are merged.
        attn_dropout: nn.Dropout(dropout) on the attention weights.
        resid_dropout: nn.Dropout(dropout) on the output, after c_proj.
        a buffer (any name) holding the causal mask: block_size x block_size positions.

    Raises:
        ValueError: when n_embd is not divisible by n_head.
    """

    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        # Hint: check n_embd % n_head first and raise a ValueError that says why. Then
        #   c_attn and c_proj as above, the two nn.Dropout modules, and a (block_size,
        #   block_size) lower triangle of ones registered with self.register_buffer. Keep
        #   n_head (and n_embd) for forward.
        raise NotImplementedError("Write this part of CausalSelfAttention.__init__, then run the check again.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every head attends over the past; the heads' outputs are merged and projected.

        Args:
            x: (B, T, C) float32, with C == n_embd and T <= block_size.
        Returns:
            (B, T, C) float32. For head h, position t's result is the softmax-weighted
            average of the head's values at positions 0..t, with weights
            softmax(q_t . k_j / sqrt(hs)); the nh results of width hs are laid side by side
            (head h in channels [h * hs, (h + 1) * hs)), then passed through c_proj.
        """
        B, T, C = x.shape
        # Hint: q, k, v = self.c_attn(x).split(C, dim=2). Give each its heads with
        #   .view(B, T, nh, hs).transpose(1, 2) -> (B, nh, T, hs); a bare .view(B, nh, T, hs)
        #   has the right shape but mixes positions and heads. Scores (B, nh, T, T) scaled by
        #   1 / sqrt(hs), future masked with -inf, softmax over the last dimension, dropout,
        #   then @ v. Merge with .transpose(1, 2).contiguous().view(B, T, C), then c_proj
        #   and resid_dropout.
        raise NotImplementedError("Write this part of CausalSelfAttention.forward, then run the check again.")


if __name__ == "__main__":
    torch.manual_seed(0)
    B, T, C, n_head, block_size = 2, 6, 12, 3, 8
    attn = CausalSelfAttention(C, n_head, block_size)
    x = torch.randn(B, T, C)
    out = attn(x)
    print(f"{n_head} heads of size {C // n_head}: input {tuple(x.shape)} -> output {tuple(out.shape)}")
    print("weights and buffers:", {name: tuple(t.shape) for name, t in attn.state_dict().items()})

    # Change the last token only: every earlier position's output must stay the same.
    x2 = x.clone()
    x2[:, -1] += 1.0
    changed = (attn(x2) - out).abs().amax(dim=(0, 2)) > 1e-6
    print("positions whose output changed when the last token changed:", changed.nonzero().flatten().tolist())

    # Same shape, different contents: why the split needs the transpose.
    q = torch.arange(T * C).view(1, T, C)
    right = q.view(1, T, n_head, C // n_head).transpose(1, 2)
    wrong = q.view(1, n_head, T, C // n_head)
    print("head 1, position 0 with view + transpose:", right[0, 1, 0].tolist())
    print("head 1, position 0 with a bare view:     ", wrong[0, 1, 0].tolist())

    try:
        CausalSelfAttention(10, 3, block_size)
    except ValueError as exc:
        print("n_embd=10, n_head=3:", exc)
