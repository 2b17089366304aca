"""Stage 05: one head of causal self-attention.

Every position of a sequence asks a question (its query), advertises what it holds (its
key), and offers something to pass on (its value). The head scores each query against the
keys of the positions at or before it, turns the scores into weights with a softmax, and
returns for each position the weighted average of those values. Positions after it get
weight exactly zero: a language model must not peek at the tokens it is asked to predict.

Run this file for a quick demo: `python exercises/05_attention/attention.py`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Head(nn.Module):
    """One head of masked (causal) self-attention.

    Args:
        n_embd: C, the width of each input vector.
        head_size: the width of each query, key and value vector, and of the output.
        block_size: the longest sequence (context length) the head accepts; the causal
            mask covers block_size positions.
        dropout: the probability of dropping each attention weight in train mode.

    Attributes (the grader finds them by these names):
        key, query, value: nn.Linear(n_embd, head_size, bias=False).
        tril: a buffer of shape (block_size, block_size), ones on and below the diagonal.
        dropout: nn.Dropout(dropout), applied to the attention weights.
    """

    def __init__(self, n_embd: int, head_size: int, block_size: int, dropout: float = 0.0):
        super().__init__()
        # Hint: three nn.Linear(n_embd, head_size, bias=False) named key, query and value;
        #   self.register_buffer("tril", ...) with a (block_size, block_size) lower triangle
        #   of ones (sized by the context length, NOT by n_embd); nn.Dropout(dropout).
        raise NotImplementedError("Write this part of Head.__init__, then run the check again.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the past.

        Args:
            x: (B, T, C) float32, with T <= block_size.
        Returns:
            (B, T, head_size) float32: position t's output is the softmax-weighted average of
            the values at positions 0..t, with weights softmax(q_t . k_j / sqrt(head_size)).
        Raises:
            ValueError: when T > block_size (the mask has no rows for those positions).
        """
        B, T, C = x.shape
        # Hint: check T first. Scores q @ k^T of shape (B, T, T), times head_size ** -0.5;
        #   masked_fill the future (where self.tril[:T, :T] == 0) with float("-inf");
        #   softmax over the last dimension; dropout; then multiply by v.
        raise NotImplementedError("Write this part of Head.forward, then run the check again.")


if __name__ == "__main__":
    torch.manual_seed(0)
    B, T, C, head_size, block_size = 2, 6, 16, 8, 8
    head = Head(C, head_size, block_size)
    x = torch.randn(B, T, C)
    out = head(x)
    print(f"input {tuple(x.shape)} -> output {tuple(out.shape)}")

    # Change the last token only: every earlier position's output must stay the same.
    x2 = x.clone()
    x2[:, -1] += 1.0
    changed = (head(x2) - out).abs().amax(dim=(0, 2)) > 1e-6
    print("positions whose output changed when the last token changed:", changed.nonzero().flatten().tolist())

    print("the mask buffer:", {name: tuple(t.shape) for name, t in head.state_dict().items()})
    try:
        head(torch.randn(1, block_size + 1, C))
    except ValueError as exc:
        print("too long a sequence:", exc)
