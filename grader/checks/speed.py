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


@dataclass(frozen=True)
class SpeedVerdict:
    """What a speed check measured and what it concludes, before the conclusion counts.

    The GPU checks build one and enforce it; `python -m grader gpucheck` shows it in its
    report (ratio, threshold, margin), and the project's CPU smoke tests only ask that one was
    reached. Thresholds and the figures behind them: benchmarks/GPU.md.
    """

    result: SpeedResult
    max_ratio: float  # the learner's time over the baseline's may be at most this
    failure: str  # what the learner reads when it is above

    @property
    def ratio(self) -> float:
        return self.result.ratio

    @property
    def passed(self) -> bool:
        return self.result.ratio <= self.max_ratio

    @property
    def margin(self) -> float:
        """How many times faster than the threshold asks: above 1 passes."""
        return self.max_ratio / self.result.ratio if self.result.ratio > 0 else float("inf")

    def enforce(self) -> None:
        if not self.passed:
            raise CheckFailure(self.failure)


def speed_verdict(result: SpeedResult, max_ratio: float, what: str, hint: str = "") -> SpeedVerdict:
    return SpeedVerdict(
        result,
        max_ratio,
        f"{what} took {result.ratio:.3g}x the reference's time (median of {result.repeats} interleaved runs: "
        f"{result.learner_seconds:.3g} s vs {result.reference_seconds:.3g} s); at most {max_ratio:.3g}x is allowed. "
        + hint,
    )


def assert_speed_ratio(result: SpeedResult, max_ratio: float, what: str, hint: str = "") -> None:
    speed_verdict(result, max_ratio, what, hint).enforce()


def needs_cuda(capability: tuple[int, int] | None = None, generation: str = "") -> None:
    """The GPU checks measure GPU features; without CUDA, or on a GPU older than `capability`
    (the compute capability of the `generation` that has the feature), they count neither way."""
    if not torch.cuda.is_available():
        raise Skip("needs CUDA")
    if capability is not None and torch.cuda.get_device_capability() < capability:
        have = ".".join(map(str, torch.cuda.get_device_capability()))
        raise Skip(f"needs an {generation} GPU (compute capability {capability[0]}.{capability[1]} or newer; "
                   f"{torch.cuda.get_device_name()} has {have})")
