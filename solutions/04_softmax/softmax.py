"""Stage 04: a stable softmax, the causal mask, and averaging the past three ways.

Attention is a weighted average of the past. Before building it, you build its parts:

1. `softmax`, written yourself, so that it never overflows on large logits and gives
   exactly zero weight to masked (-inf) positions.
2. `causal_mask` and `mask_future`: position t may look at positions 0..t, never after.
3. The simplest "attention" there is: every position takes the plain average of itself and
   everything before it (a "bag of words"). You compute it three ways that must agree:
   with Python loops, with one matrix multiplication by a normalized lower-triangular
   matrix, and with a masked softmax of all-zero scores. The third is exactly the shape of
   self-attention, with scores that do not depend on the data yet.

Run this file for a quick demo: `python exercises/04_softmax/softmax.py`.
"""
from __future__ import annotations

import torch


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(x) / sum(exp(x)) along `dim`, computed so that it cannot overflow.

    Args:
        x: a float tensor of any shape (float32 or float64). Entries may be -inf, meaning
            "masked": they get weight exactly 0.
        dim: the dimension to normalize over; negative values count from the end.
    Returns:
        A tensor of the same shape and dtype as `x`, with entries in [0, 1]. Along `dim`
        they sum to 1, except where every entry of that slice is -inf (a fully masked
        row): that slice is all zeros, not NaN. Such a row has nothing it may attend to, so
        it contributes nothing; NaN there would spread through every later matmul into the
        loss and the gradients of the whole batch.
    """
    ### BEGIN SOLUTION
    # Hint: softmax(x) == softmax(x - c) for any c, so subtract the max along `dim`
    #   (keepdim=True) before exp: the largest entry becomes exp(0) = 1 and nothing
    #   overflows. A fully masked row has max -inf; -inf - (-inf) is NaN, so handle it.
    largest = x.amax(dim=dim, keepdim=True)
    # A fully masked row: shift by 0 instead, so every exp is exp(-inf) = 0.
    largest = torch.where(torch.isfinite(largest), largest, torch.zeros_like(largest))
    e = torch.exp(x - largest)
    total = e.sum(dim=dim, keepdim=True)
    # Only a fully masked row sums to 0 (otherwise its max contributes exp(0) = 1).
    return e / total.masked_fill(total == 0, 1.0)
    ### END SOLUTION


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The (T, T) bool mask of what each position may look at.

    `mask[i, j]` is True when position i may use position j, that is when j <= i: the lower
    triangle, diagonal included (a position always sees itself). False above the diagonal.
    """
    ### BEGIN SOLUTION
    # Hint: torch.tril keeps the lower triangle of a matrix, diagonal included.
    return torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))
    ### END SOLUTION


def mask_future(scores: torch.Tensor) -> torch.Tensor:
    """A copy of `scores` with -inf wherever a position would look into its future.

    Args:
        scores: (..., T, T) float; `scores[..., i, j]` is how much position i attends to j.
    Returns:
        The same shape and dtype: `-inf` where j > i, `scores` unchanged where j <= i.
        After `softmax(..., dim=-1)`, the future gets weight exactly 0.
    """
    ### BEGIN SOLUTION
    # Hint: build causal_mask(T) for the last two dimensions and use Tensor.masked_fill
    #   where the mask is False. It broadcasts over any leading (batch, head) dimensions.
    T = scores.shape[-1]
    return scores.masked_fill(~causal_mask(T, scores.device), float("-inf"))
    ### END SOLUTION


def average_loop(x: torch.Tensor) -> torch.Tensor:
    """The running mean of the past, with explicit Python loops (the slow, obvious way).

    Args:
        x: (B, T, C) float.
    Returns:
        (B, T, C), same dtype: `out[b, t] = x[b, 0:t+1].mean(dim=0)`, the average of
        positions 0..t, position t included.
    """
    ### BEGIN SOLUTION
    B, T, C = x.shape
    out = torch.zeros_like(x)
    for b in range(B):
        for t in range(T):
            out[b, t] = x[b, : t + 1].mean(dim=0)
    return out
    ### END SOLUTION


def average_tril(x: torch.Tensor) -> torch.Tensor:
    """The same running mean as `average_loop`, as one batched matrix multiplication.

    Row t of the (T, T) weights is 1/(t+1) on columns 0..t and 0 after: a lower-triangular
    matrix of ones whose rows are divided by their sums. `weights @ x` then averages.
    No Python loop over positions.

    Args:
        x: (B, T, C) float.
    Returns:
        (B, T, C), same dtype as `x`.
    """
    ### BEGIN SOLUTION
    # Hint: build the ones with x's dtype and device, so that the matmul works for float64
    #   too. (T, T) @ (B, T, C) broadcasts over the batch.
    T = x.shape[1]
    weights = torch.tril(torch.ones(T, T, dtype=x.dtype, device=x.device))
    weights = weights / weights.sum(dim=1, keepdim=True)
    return weights @ x
    ### END SOLUTION


def average_softmax(x: torch.Tensor) -> torch.Tensor:
    """The same running mean again, the way attention will compute it.

    Start from all-zero (T, T) scores ("every position is equally interesting"), hide the
    future with `mask_future`, and turn each row into weights with your `softmax`: the
    softmax of t+1 zeros is 1/(t+1) each, and the masked entries become exactly 0.
    Then `weights @ x`. No Python loop over positions.

    Args:
        x: (B, T, C) float.
    Returns:
        (B, T, C), same dtype as `x`.
    """
    ### BEGIN SOLUTION
    T = x.shape[1]
    scores = torch.zeros(T, T, dtype=x.dtype, device=x.device)
    weights = softmax(mask_future(scores), dim=-1)
    return weights @ x
    ### END SOLUTION


if __name__ == "__main__":
    logits = torch.tensor([[1.0, 2.0, 3.0], [1000.0, 1001.0, 1002.0], [0.0, float("-inf"), 0.0]])
    print("softmax of three rows (the second would overflow without the max):")
    print(softmax(logits, dim=-1))
    print("a fully masked row:", softmax(torch.full((3,), float("-inf"))))

    T = 4
    print(f"\ncausal_mask({T}):\n{causal_mask(T).int()}")
    weights = softmax(mask_future(torch.zeros(T, T)), dim=-1)
    print(f"softmax(mask_future(zeros)): the averaging weights\n{weights}")

    torch.manual_seed(0)
    x = torch.randn(2, 8, 3)
    loop, tril, soft = average_loop(x), average_tril(x), average_softmax(x)
    agree = torch.allclose(loop, tril, atol=1e-6) and torch.allclose(loop, soft, atol=1e-6)
    print(f"\nthe three averages agree: {agree}")
    print("x[0, :3] =", x[0, :3].tolist())
    print("out[0, 2] =", soft[0, 2].tolist(), "(the mean of those three rows)")
