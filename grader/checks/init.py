"""Initialization: the loss before training, and the statistics of fresh weights."""
from __future__ import annotations

import math

import torch

from ..registry import CheckFailure
from .values import then_hint


def assert_init_loss(loss: float, vocab_size: int, tolerance: float, hint: str = "") -> None:
    """Before training every token should be about equally likely: loss close to ln(vocab_size)."""
    expected = math.log(vocab_size)
    if not math.isfinite(loss) or abs(loss - expected) > tolerance:
        raise CheckFailure(
            f"The loss at initialization is {loss:.4f}, expected about ln({vocab_size}) = {expected:.4f} "
            f"(within {tolerance:g}). "
            + (hint or "A fresh model should spread its probability evenly over the vocabulary.")
        )


def assert_weight_stats(
    weight: torch.Tensor, name: str, mean: float, std: float, mean_tol: float, std_rel_tol: float, hint: str = ""
) -> None:
    """A fresh weight matrix has the intended mean and standard deviation."""
    w = weight.detach().double().flatten()
    got_mean, got_std = w.mean().item(), w.std().item()
    if abs(got_mean - mean) > mean_tol or abs(got_std - std) > std_rel_tol * max(std, 1e-12):
        raise CheckFailure(
            f"{name} at initialization has mean {got_mean:.4g} and std {got_std:.4g}; "
            f"expected mean {mean:g} and std {std:g} (within {std_rel_tol:.0%})."
            + then_hint(hint)
        )
