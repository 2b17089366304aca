"""Run one stage's checks against one implementation and turn each outcome into a Record."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import random
import re
import signal
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, register_random, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import Flaky

from .checks import forbidden
from .course import Course, Stage
from .handle import Implementation, LearnerError, LoadError, NotImplementedByLearner, reference
from .registry import Check, Skip, load_checks
from .results import ERROR, FAILED, PASSED, SKIPPED, Record, graded_files
from .sandbox.jail import SandboxFailure

# The same code gets the same score on every run: examples are derived from each check's
# name, nothing is remembered between runs, and slow learner code is not a failure by itself.
settings.register_profile(
    "grader",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    report_multiple_bugs=False,
    max_examples=25,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile("grader")

# hypothesis caches what it computes (Unicode tables, the constants it reads from source files)
# in ./.hypothesis by default: the grader must leave nothing in the learner's current folder,
# so the caches go to a folder of this process that is removed when it exits.
_HYPOTHESIS_HOME = tempfile.TemporaryDirectory(prefix="grader-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME.name)


class _TorchRandom:
    """torch's global generator in the shape hypothesis expects, so that it is reseeded before
    every example and learner code that samples gives the same answer for the same example."""

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def getstate(self):
        return torch.get_rng_state()

    def setstate(self, state) -> None:
        torch.set_rng_state(state)


register_random(_TORCH_RANDOM := _TorchRandom())  # hypothesis keeps only a weak reference


class CheckTimeout(BaseException):
    """Raised inside learner code when a check runs out of time; learner code must not catch it."""


class StageProgress:
    """What run_stage says while it runs, for a live report; this one says nothing.

    In isolated mode the checks still run in this process (only the learner's code runs in
    the sandboxed child), so the same calls come in both modes."""

    def stage_started(self, checks: list[Check], graded_files: list[dict]) -> None:
        """The checks about to run, in order, and the files they grade (results.graded_files)."""

    def check_started(self, check: Check) -> None:
        """A check begins."""

    def check_finished(self, record: Record) -> None:
        """A check's record, as soon as it is known (also for checks that never ran)."""


def stage_checks(stage: Stage) -> list[Check]:
    """The public checks, then the hidden ones where this copy of the course has them."""
    found = []
    for visibility in ("public", "hidden"):
        path = stage.suite_dir / f"{visibility}.py"
        if path.is_file():
            found += load_checks(path, visibility)
    return found


def run_stage(
    course: Course,
    stage: Stage,
    impl: Implementation,
    verbose: bool = False,
    only: str | None = None,
    progress: StageProgress | None = None,
) -> list[Record]:
    """Every check of the stage (or just the one named `only`) on `impl`, in suite order."""
    checks = [c for c in stage_checks(stage) if only is None or c.id == only]
    all_modules = {name for s in course.stages for name in s.module_names}
    # Isolated, the child imports a copy of the learner's files: its bytes are what was
    # graded, and the learner's own path is what they recognise.
    files = graded_files(getattr(impl, "local", impl).files, impl.files)
    progress = progress or StageProgress()
    progress.stage_started(checks, files)

    def everyone(status: str, message: str) -> list[Record]:
        records = [_record(stage, c, 0, status, message, 0.0, files) for c in checks]
        for record in records:
            progress.check_finished(record)
        return records

    # In isolated mode the scan also reads the submission's modules that the stage files import.
    violations = forbidden.scan(getattr(impl, "scan_files", impl.files), stage.forbidden)
    if violations:
        listed = "; ".join(v.describe() for v in violations[:5])
        return everyone(
            FAILED,
            f"Not graded: this stage is built from scratch, and your code uses a forbidden API ({listed}). "
            f"Forbidden here: {', '.join(stage.forbidden)}. Remove it and write that part yourself.",
        )
    try:
        impl.load(all_modules)
    except LoadError as exc:
        return everyone(ERROR, str(exc))

    ref = None
    records: list[Record] = []
    started = time.perf_counter()
    for check in checks:
        if time.perf_counter() - started > stage.time_limit:
            records.append(_record(stage, check, 0, FAILED, f"Not run: the stage's time limit of {stage.time_limit:g} s ran out.", 0.0, files))
            progress.check_finished(records[-1])
            continue
        progress.check_started(check)
        fixtures = {}
        if "ref" in check.fixtures and ref is None:
            ref = reference(course, stage)
            ref.load(all_modules)
        # An isolated implementation (grader.sandbox) counts its limits per check and gives a
        # tmp_path that its sandboxed process can write; in-process, neither changes anything.
        begin_check = getattr(impl, "begin_check", None)
        if begin_check is not None:
            begin_check(check.id, stage.time_limit - (time.perf_counter() - started))
        make_tmp = getattr(impl, "temporary_directory", None) or (lambda: tempfile.TemporaryDirectory(prefix="grader-"))
        with make_tmp() as tmp:
            available = {"impl": impl, "ref": ref, "tmp_path": Path(tmp)}
            fixtures = {name: available[name] for name in check.fixtures if name in available}
            records.append(dataclasses.replace(run_check(stage, check, fixtures, verbose), graded_files=files))
        if begin_check is not None:
            impl.end_check()
        progress.check_finished(records[-1])
    return records


def run_check(stage: Stage, check: Check, fixtures: dict, verbose: bool = False) -> Record:
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    captured = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured), _time_limit(stage.check_time_limit):
            check.func(**fixtures)
        status, message = PASSED, ""
    except Skip as exc:
        status, message = SKIPPED, f"skipped: {exc}"
    except NotImplementedByLearner as exc:
        status, message = FAILED, exc.describe()
    except LearnerError as exc:
        status, message = ERROR, exc.describe() + _notes(exc)
        if verbose:
            message += "\n" + exc.traceback()
    except SandboxFailure as exc:  # isolated mode: a limit exceeded, or the learner's process died
        status, message = FAILED, str(exc)
    except CheckTimeout:
        status, message = FAILED, (
            f"Took longer than this check's limit of {stage.check_time_limit:g} s. "
            "Look for an endless loop, or a loop in Python where a tensor operation would do."
        )
    except AssertionError as exc:
        status, message = FAILED, (str(exc) or "A check failed.") + _notes(exc)
    except Flaky:
        status, message = FAILED, (
            "Your code gave different answers when called twice with the same input, so this check cannot "
            "judge it. Look for randomness the caller does not control (use the generator you are given) "
            "or state kept between calls."
        )
    except Exception as exc:  # noqa: BLE001 - a crash in the suite itself, not the learner's fault
        status = ERROR
        message = f"The check itself crashed ({type(exc).__name__}: {exc}). This is a grader bug; please report it."
        if verbose:
            message += "\n" + traceback.format_exc()
    if verbose and captured.getvalue().strip():
        message += "\nYour code printed:\n" + captured.getvalue()[-2000:]
    earned = check.points if status == PASSED else 0
    return _record(stage, check, earned, status, message, time.perf_counter() - start)


def _record(
    stage: Stage, check: Check, earned: float, status: str, message: str, duration: float, files: list[dict] = ()
) -> Record:
    return Record(
        stage.id, check.id, check.title, earned, check.points, status, message, check.visibility, round(duration, 3), list(files)
    )


def _notes(exc: BaseException) -> str:
    """hypothesis attaches the failing example as a note; show it without the fixtures."""
    for note in getattr(exc, "__notes__", []):
        if note.startswith("Falsifying example"):
            example = re.sub(r"#[^\n]*", "", note.split(":", 1)[1])  # hypothesis' own comments
            example = re.sub(r"\b(impl|ref|tmp_path)=[^,\n)]*,?\s*", "", example).strip()
            example = re.sub(r"^\w+\(\s*", "(", example).replace("\n", " ")
            example = re.sub(r"\s+", " ", example).replace("( ", "(").replace(", )", ")")
            return f"\nFailing example: {example}"
    return ""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Interrupt a check that runs too long (where the platform has SIGALRM, in the main thread)."""
    usable = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise CheckTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
