"""Speed as a ratio against the reference, timed side by side in one run.

The grader times; learner code never reports a time. Every timed run gets fresh inputs
made from a secret the learner's code never sees, so remembering answers gains nothing, and
the answers of timed runs are checked, so skipping the work gains nothing either.
"""
from __future__ import annotations

import secrets
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..registry import CheckFailure, Skip
from ..sandbox import overhead_seconds
from .values import then_hint

# Taken when the grader is imported, before any learner code: code that later rebinds
# time.perf_counter or time.process_time in the grader's own process (in-process grading)
# does not change these. In isolated grading the learner's process has its own clocks anyway.
_wall_clock = time.perf_counter
_process_cpu = time.process_time


def fresh_generator() -> torch.Generator:
    """A CPU generator seeded from a secret drawn now: inputs the learner's code cannot predict."""
    return torch.Generator().manual_seed(secrets.randbits(62))


def seed_of(gen: torch.Generator) -> int:
    """A seed drawn from `gen`, for inputs made where they are used (matrices too large to send)."""
    return int(torch.randint(0, 2**62, (), generator=gen))


def fresh_batches(gen: torch.Generator, vocab_size: int, batch: int, T: int) -> list:
    """One micro-batch [(x, y)] of random tokens drawn from `gen`: a timed training step gets new ones every time."""
    return [(torch.randint(0, vocab_size, (batch, T), generator=gen),
             torch.randint(0, vocab_size, (batch, T), generator=gen))]


def cpu_clock(impl) -> Callable[[], float]:
    """CPU seconds of the process where `impl`'s code runs, read by the grader: a sandboxed
    child's from outside (every process it started, see RemoteImplementation.child_cpu_seconds);
    in-process, this process's own."""
    child = getattr(impl, "child_cpu_seconds", None)
    return child if callable(child) else _process_cpu


@dataclass
class SpeedResult:
    learner_seconds: float  # median
    reference_seconds: float  # median
    repeats: int

    @property
    def ratio(self) -> float:
        return self.learner_seconds / self.reference_seconds


def measure_ratio(
    learner: Callable[..., object],
    reference: Callable[..., object],
    repeats: int = 5,
    warmup: int = 1,
    device: str = "cpu",
    *,
    inputs: Callable[[torch.Generator], Any] | None = None,
    agree: Callable[[Any, Any], None] | None = None,
    clocks: tuple[Callable[[], float], Callable[[], float]] | None = None,
) -> SpeedResult:
    """Median times of interleaved runs (learner, reference, learner, ...), after warm-up.

    Interleaving spreads any slowdown of the machine evenly over both sides, so the ratio
    stays meaningful where the absolute times are not.

    `inputs(generator)`, when given, makes the inputs of one run; every run (warm-up
    included) gets new ones from fresh_generator(), the same for both sides, and the sides
    are called as learner(inputs) and reference(inputs). `agree(learner_answer,
    reference_answer)` then judges what the learner's timed run returned and raises
    CheckFailure when it is wrong: an answer remembered from an earlier call, or no work done.

    The grader measures: the wall clock of this process by default (minus the time calls
    spend crossing to a sandboxed child), or `clocks` = (learner's, reference's) CPU clocks,
    such as cpu_clock(impl) and cpu_clock(ref): other busy processes then do not inflate one
    side's samples.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise Skip("needs CUDA")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def timed(fn: Callable[..., object], args: tuple, clock: Callable[[], float] | None) -> tuple[float, object]:
        sync()
        if clock is not None:
            start = clock()
            answer = fn(*args)
            sync()
            return clock() - start, answer
        crossing = overhead_seconds()
        start = _wall_clock()
        answer = fn(*args)
        sync()
        # Isolated grading: the time calls spend crossing to the learner's process is not theirs.
        return _wall_clock() - start - (overhead_seconds() - crossing), answer

    learner_clock, reference_clock = clocks or (None, None)
    learner_times, reference_times = [], []
    for run in range(warmup + repeats):
        args = () if inputs is None else (inputs(fresh_generator()),)
        learner_time, learner_answer = timed(learner, args, learner_clock)
        reference_time, reference_answer = timed(reference, args, reference_clock)
        if agree is not None:
            agree(learner_answer, reference_answer)
        if run >= warmup:
            learner_times.append(learner_time)
            reference_times.append(reference_time)
    ref, mine = statistics.median(reference_times), statistics.median(learner_times)
    if ref <= 0:
        raise Skip("the reference ran too fast to time on this machine")
    if mine <= 0:  # a clock that did not move: this machine cannot time the learner's process
        raise Skip("the grader could not time your code on this machine")
    return SpeedResult(mine, ref, repeats)


def timed_answers_agree(what: str, rtol: float = 1e-4, atol: float = 1e-5) -> Callable[[Any, Any], None]:
    """An `agree` for measure_ratio: the learner's timed answers (a tensor, or a list of them)
    must be close to the reference's on the same fresh inputs."""

    def agree(got: Any, expected: Any) -> None:
        got_list = got if isinstance(got, (list, tuple)) else [got]
        expected_list = expected if isinstance(expected, (list, tuple)) else [expected]
        good = len(got_list) == len(expected_list) and all(
            isinstance(g, torch.Tensor) and g.shape == e.shape and torch.allclose(g.float(), e.float(), rtol=rtol, atol=atol)
            for g, e in zip(got_list, expected_list)
        )
        if not good:
            raise CheckFailure(
                f"While it was timed, {what} returned wrong answers for new random inputs (the other checks show "
                "the values it should give). Each timed run gets inputs nobody has seen before: compute the answer "
                "every time, do not remember earlier ones."
            )

    return agree


def measure_calls(
    learner: tuple, reference: tuple, make_args: Callable[[torch.Generator], tuple], calls: int, repeats: int,
    what: str, rtol: float = 1e-4, atol: float = 1e-5, agree: Callable[[Any, Any], None] | None = None,
) -> SpeedResult:
    """measure_ratio for CPU checks of many small calls.

    Each side is (its implementation handle, the function to time, *more arguments), or
    (None, a function of the grader's own, ...) for an oracle built from PyTorch. One run is
    `calls` calls fn(*make_args(generator), *more) on fresh arguments (from a secret seed),
    made where the function lives (one round trip, probes.call_each), on one thread, timed by
    the CPU clock the grader reads for that side (cpu_clock). The learner's answers must
    match the reference side's on the same arguments, or pass `agree(learner's answers,
    reference's answers)` when given.
    """
    from ..probes import call_each

    def side(impl, fn, *more):
        def run(args):
            each = [tuple(a) + more for a in args]
            return call_each(fn, each) if impl is None else impl.probe(call_each, fn, each)

        return run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # mirrored to a sandboxed child: small ops on a busy machine's threads are noise
    try:
        return measure_ratio(
            side(*learner),
            side(*reference),
            repeats=repeats,
            inputs=lambda gen: [make_args(gen) for _ in range(calls)],
            agree=agree or timed_answers_agree(what, rtol, atol),
            clocks=(cpu_clock(learner[0]), cpu_clock(reference[0])),
        )
    finally:
        torch.set_num_threads(threads)


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
        f"{result.learner_seconds:.3g} s vs {result.reference_seconds:.3g} s); at most {max_ratio:.3g}x is allowed."
        + then_hint(hint),
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
