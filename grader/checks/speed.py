"""Speed as a ratio against the reference, timed side by side in one run."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..registry import CheckFailure, Skip
from ..sandbox import overhead_seconds


@dataclass
class SpeedResult:
    learner_seconds: float  # median
    reference_seconds: float  # median
    repeats: int

    @property
    def ratio(self) -> float:
        return self.learner_seconds / self.reference_seconds


def measure_ratio(
    learner: Callable[[], object], reference: Callable[[], object], repeats: int = 5, warmup: int = 1, device: str = "cpu"
) -> SpeedResult:
    """Median times of interleaved runs (learner, reference, learner, ...), after warm-up.

    Interleaving spreads any slowdown of the machine evenly over both sides, so the ratio
    stays meaningful where the absolute times are not.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise Skip("needs CUDA")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def timed(fn: Callable[[], object]) -> float:
        sync()
        crossing = overhead_seconds()
        start = time.perf_counter()
        fn()
        sync()
        # Isolated grading: the time calls spend crossing to the learner's process is not theirs.
        return time.perf_counter() - start - (overhead_seconds() - crossing)

    for _ in range(warmup):
        learner(), reference()
    learner_times, reference_times = [], []
    for _ in range(repeats):
        learner_times.append(timed(learner))
        reference_times.append(timed(reference))
    ref = statistics.median(reference_times)
    if ref <= 0:
        raise Skip("the reference ran too fast to time on this machine")
    return SpeedResult(statistics.median(learner_times), ref, repeats)


def assert_speed_ratio(result: SpeedResult, max_ratio: float, what: str, hint: str = "") -> None:
    if result.ratio > max_ratio:
        raise CheckFailure(
            f"{what} took {result.ratio:.1f}x the reference's time (median of {result.repeats} interleaved runs: "
            f"{result.learner_seconds:.3g} s vs {result.reference_seconds:.3g} s); at most {max_ratio:g}x is allowed. "
            + hint
        )
