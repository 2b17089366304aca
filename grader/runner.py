"""Run one stage's checks against one implementation and turn each outcome into a Record."""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import os
import random
import re
import signal
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from hypothesis import HealthCheck, register_random, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import Flaky
from hypothesis.internal.conjecture import providers as _hypothesis_providers

from .checks import forbidden
from .course import Course, Stage
from .handle import Implementation, LearnerError, LoadError, NotImplementedByLearner, reference
from .registry import Check, Skip, load_checks
from .results import ERROR, FAILED, PASSED, SKIPPED, Record, graded_files, score
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

# Hypothesis also draws, now and then, constants it reads from the source of "local" modules.
# In process those include the learner's own files: their code could steer the examples, and
# in-process and isolated grading would try different ones. The grader's examples come from
# Hypothesis's built-in constants only. (This is an internal of Hypothesis; where a version
# lacks it, there is nothing to switch off.)
if hasattr(_hypothesis_providers, "_get_local_constants") and hasattr(_hypothesis_providers, "Constants"):
    _NO_LOCAL_CONSTANTS = _hypothesis_providers.Constants()
    _hypothesis_providers._get_local_constants = lambda: _NO_LOCAL_CONSTANTS

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


# Ends the message of a check that crashed in the suite's own code (not the learner's fault).
GRADER_BUG = "This is a grader bug; please report it."


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
    shown_live = progress is not None
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

    def give_up(check: Check) -> None:
        """The last resort, from a watchdog thread: learner code in this process ran past the
        check's limit and could not be stopped. Report what is known, say why, end the process."""
        message = (
            f"{_timeout_message(stage)} Then it could not be stopped: {GIVE_UP_SECONDS:g} s later it was still "
            "running, because it catches the grader's stop (a bare `except:` or `except BaseException:` does). "
            "Catch only the exceptions you expect, such as `except ValueError:`."
        )
        final = [*records, _record(stage, check, 0, FAILED, message, stage.check_time_limit + GIVE_UP_SECONDS, files)]
        final += [
            _record(stage, c, 0, FAILED, f"Not run: the grader stopped at the check \"{check.title}\", which could not be stopped.", 0.0, files)
            for c in checks[checks.index(check) + 1 :]
        ]
        for record in final[len(records) :]:
            progress.check_finished(record)
        if shown_live:
            earned, possible = score(final)
            text = f"\nScore: {earned:g}/{possible:g}\nThe grader stopped early: {message}\n"
        else:
            from .report import render

            text = render(stage, final, impl.label) + "\n"
        sys.__stdout__.write(text)
        sys.__stdout__.flush()
        os._exit(1)

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
            last_resort = (lambda check=check: give_up(check)) if begin_check is None else None  # in-process only
            records.append(dataclasses.replace(run_check(stage, check, fixtures, verbose, last_resort), graded_files=files))
        if begin_check is not None:
            impl.end_check()
        progress.check_finished(records[-1])
    return records


def run_check(
    stage: Stage, check: Check, fixtures: dict, verbose: bool = False, give_up: Callable[[], None] | None = None
) -> Record:
    """One check's record. `give_up` ends the process when learner code running in this one
    cannot be stopped after its time limit (see _CheckLimit)."""
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    captured = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            _CheckLimit(stage.check_time_limit, give_up).run(check.func, fixtures)
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
        status, message = FAILED, _timeout_message(stage)
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
        message = f"The check itself crashed ({type(exc).__name__}: {exc}). {GRADER_BUG}"
        if verbose:
            message += "\n" + traceback.format_exc()
    if verbose and captured.getvalue().strip():
        message += "\nYour code printed:\n" + captured.getvalue()[-2000:]
    earned = check.points if status == PASSED else 0
    return _record(stage, check, earned, status, message, time.perf_counter() - start)


def _timeout_message(stage: Stage) -> str:
    return (
        f"Took longer than this check's limit of {stage.check_time_limit:g} s. "
        "Look for an endless loop, or a loop in Python where a tensor operation would do."
    )


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


# In-process, a check's time limit is an alarm, and one alarm can be lost: raised inside a
# garbage-collector callback (hypothesis installs one), Python prints it and carries on, and
# learner code may catch everything (`except:`, `except BaseException:`). So once the limit is
# reached the alarm fires again every REFIRE_SECONDS for as long as the check runs, and each
# line of learner code that runs after the limit raises again. If the check still runs
# GIVE_UP_SECONDS after its limit, the last resort ends the run: the report so far, this
# check and the ones left as failed, and a message that says why. (In isolated mode learner
# code runs in a child process, which the parent kills at the limit: grader/sandbox/jail.py.)
REFIRE_SECONDS = 0.1
GIVE_UP_SECONDS = 10.0
# Code of these folders is never interrupted line by line: the grader, its suites, hypothesis,
# torch and the standard library clean up after the check's timeout as they unwind.
_TRUSTED_FOLDERS = tuple(
    sorted(
        os.path.join(str(Path(folder).resolve()), "")
        for folder in {Path(__file__).parent, *(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))}
    )
)


class _CheckLimit:
    """Run one check under its time limit (see REFIRE_SECONDS); `give_up()` is the last
    resort, called from a watchdog thread, and must end the process."""

    def __init__(self, seconds: float, give_up: Callable[[], None] | None):
        self.seconds = seconds
        self.give_up = give_up
        self._running = False
        self._done = threading.Event()
        self._learner_files: dict[str, bool] = {}

    def run(self, func: Callable, kwargs: dict) -> None:
        if not (hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()):
            func(**kwargs)  # no alarm here (Windows, or a worker thread): the check runs unlimited
            return
        previous_handler, previous_trace = signal.signal(signal.SIGALRM, self._expire), sys.gettrace()
        if self.give_up is not None:
            threading.Thread(target=self._watch, name="grader-check-watchdog", daemon=True).start()
        self._running = True
        signal.setitimer(signal.ITIMER_REAL, self.seconds, REFIRE_SECONDS)
        try:
            _limited(func, kwargs)
        finally:
            self._running = False  # from here the alarm and the line trace do nothing
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._done.set()
            sys.settrace(previous_trace)
            signal.signal(signal.SIGALRM, previous_handler)

    def _expire(self, signum, frame) -> None:
        if not self._running or not _inside_limited(frame):
            return  # the check is over: run() is taking the alarm down
        sys.settrace(self._stop_learner_code)
        running = frame
        while running is not None and running.f_code is not _limited.__code__:
            if self._is_learner_code(running):
                running.f_trace = self._stop_learner_code  # frames already running get traced too
            running = running.f_back
        if not _drops_exceptions(frame):
            raise CheckTimeout()
        # In a gc callback Python would drop it: the trace raises once the callback returns.

    def _stop_learner_code(self, frame, event, arg):
        """After the limit, a trace function: the next line of learner code raises CheckTimeout,
        so that an `except:` that caught the alarm's raises again at once."""
        if not self._running or not self._is_learner_code(frame):
            return None
        if event not in ("call", "line") or _drops_exceptions(frame):
            return self._stop_learner_code  # raise once it is being handled, or once the callback returns
        # Python removes a trace function that raises: the alarm, due at once, puts it back.
        signal.setitimer(signal.ITIMER_REAL, REFIRE_SECONDS / 10, REFIRE_SECONDS)
        raise CheckTimeout()

    def _is_learner_code(self, frame) -> bool:
        name = frame.f_code.co_filename
        known = self._learner_files.get(name)
        if known is None:
            known = self._learner_files[name] = not name.startswith(_TRUSTED_FOLDERS)
        return known

    def _watch(self) -> None:
        if not self._done.wait(self.seconds + GIVE_UP_SECONDS):
            self.give_up()


def _limited(func: Callable, kwargs: dict) -> None:
    """The frame a check's time limit watches: CheckTimeout is raised only while it runs."""
    func(**kwargs)


def _drops_exceptions(frame) -> bool:
    """Whether `frame` runs inside a garbage-collector callback or a `__del__`, where Python
    prints an exception and carries on instead of raising it."""
    callbacks = {getattr(getattr(c, "__func__", c), "__code__", None) for c in gc.callbacks}
    while frame is not None and frame.f_code is not _limited.__code__:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _inside_limited(frame) -> bool:
    while frame is not None:
        if frame.f_code is _limited.__code__:
            return True
        frame = frame.f_back
    return False
