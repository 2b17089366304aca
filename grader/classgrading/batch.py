"""Grade a whole class: each learner in a child process of their own.

    python -m grader grade SUBMISSIONS_DIR --stage 02_bigram --out grades/

Every learner is graded by `check STAGE --impl FOLDER --isolate --json FILE` in a separate
process, in its own process group, with a hard time limit; with --isolate that process runs
the learner's code in a sandboxed child of its own (grader/sandbox). Whatever one learner's
code does (loop forever, crash the interpreter, call os._exit), it can only end its own
grading: the others are graded as usual, and that learner gets one clear "error" record per
check saying what happened.

A class is graded by processes forked from a server that has imported torch and the grader
once, so a learner costs their checks, not a fresh interpreter. Each learner's records are
written atomically once they are graded, with a fingerprint of the files graded: a run that
is killed and started again keeps every finished learner and grades only the rest.

This module imports neither torch nor the suites at import time: the nbgrader notebook's
kernel imports it to grade one submission.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .. import intake
from ..course import Course, CourseError, Stage
from ..results import NOT_ISOLATED, Record, isolation_summary
from .outcome import ExpectedCheck, Outcome, error_records, expected_checks
from ..sandbox.jail import die_with_parent

# Starting Python, importing torch and loading the suites comes before the stage's own
# limit starts counting.
STARTUP_MARGIN = 30.0
OUTPUT_TAIL = 2000  # characters of a child's output kept to explain a failure
FORK_SERVER_PRELOAD = ["grader.checking", "grader.runner"]  # the check command, torch and the suites' machinery
OUTPUT_FILE_LIMIT = 64 << 20  # bytes a forked grading process may print: an endless print loop must not fill the disk


@dataclass
class Progress:
    """A progress bar on a terminal, one line per learner everywhere else."""

    total: int
    stream: object = field(default_factory=lambda: sys.stderr)
    done: int = 0

    def __post_init__(self):
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._lock = threading.Lock()
        self._started = time.perf_counter()

    def start(self) -> None:
        if self.tty:
            self._bar()

    def update(self, outcome: Outcome) -> None:
        with self._lock:
            self.done += 1
            earned, possible = outcome.score
            line = f"{self.done:>{len(str(self.total))}}/{self.total}  {outcome.learner:<24} {earned:g}/{possible:g}"
            line += "  (kept from an earlier run)" if outcome.kept else f"  ({outcome.seconds:.1f} s)"
            if outcome.note:
                line += f"  {outcome.note.splitlines()[0][:90]}"
            if self.tty:
                self.stream.write("\r\033[K" + line + "\n")
                self._bar()
            else:
                self.stream.write(line + "\n")
            self.stream.flush()

    def _bar(self) -> None:
        width = 30
        filled = width * self.done // max(self.total, 1)
        elapsed = time.perf_counter() - self._started
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} learners, {elapsed:.0f} s")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def hard_timeout(stage: Stage) -> float:
    """Seconds before a learner's grading is stopped from outside.

    The runner stops starting checks once the stage's time_limit has passed, and the check
    running at that moment may still take its own check_time_limit: the runner's own limits
    always end first, so a slow learner keeps the points they earned. The hard limit is
    for code those limits cannot interrupt.
    """
    return stage.time_limit + stage.check_time_limit + STARTUP_MARGIN


def grade_submission(
    course: Course,
    stage: Stage,
    folder: Path,
    expected: list[ExpectedCheck] | None = None,
    timeout: float | None = None,
    python: str | None = None,
    learner: str = "",
    threads: int | None = None,
    isolate: bool = True,
    forked: bool = False,
) -> Outcome:
    """Grade one submission folder in a child process; never raises for anything the learner did.

    `expected` (the stage's checks) lets a failed run become one error record per check and
    lets the child's records be checked against the suite; without it a failed run has no
    records, only the note. `isolate` runs the learner's code in the sandbox; `forked` starts
    the grading process from the preloaded fork server instead of a fresh `python` (`python`).
    """
    folder = Path(folder).absolute()
    learner = learner or intake.shown(folder.name)
    timeout = hard_timeout(stage) if timeout is None else timeout
    try:
        intake.take(folder, stage)  # refused here, no process is started for it
    except intake.Refused as exc:
        return Outcome(learner, error_records(stage, expected or [], str(exc)), str(exc), 0.0, folder)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grader-batch-") as tmp:
        results = Path(tmp) / "records.json"
        argv = [stage.id, "--impl", str(folder), "--json", str(results), *(["--isolate"] if isolate else [])]
        if forked:
            code, timed_out, tail = _run_forked(argv, Path(tmp) / "output.log", threads, timeout)
        else:
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="utf-8")
            if threads:
                # Two learners graded at once must not each take every core.
                env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
            # The course root as working directory: `-m grader` then finds the course's grader,
            # never a grader.py that a learner handed in.
            code, timed_out, tail = _run([python or sys.executable, "-m", "grader", "check", *argv], course.root, env, timeout)
        seconds = time.perf_counter() - started
        note = ""
        records: list[Record] = []
        isolation = None
        if timed_out:
            note = (
                f"Grading stopped after {timeout:g} s, so none of this stage's checks could be counted. "
                f"The stage may take {stage.time_limit:g} s and each check {stage.check_time_limit:g} s. "
                "Look for an endless loop, first in code at the top level of your files (it runs on import)."
            )
        elif not results.is_file():
            if _stopping.is_set():
                note = "Grading was interrupted before this learner's checks were done; grade them again."
                return Outcome(learner, error_records(stage, expected or [], note), note, round(seconds, 2), folder,
                               interrupted=True)
            note = _exit_note(code, tail)
        else:
            try:
                records, isolation = _read_records(results, stage, expected)
            except (ValueError, KeyError, TypeError) as exc:
                note = f"The grader's results for this submission could not be read ({exc}); no check could be counted."
        if note:
            records = error_records(stage, expected or [], note)
    # Without --isolate the learner's code ran in the process that wrote the results, and
    # could have written anything there: the parent says what it knows instead.
    isolation = (isolation if isolate else NOT_ISOLATED) if records and not note else None
    return Outcome(learner, records, note, round(seconds, 2), folder, isolation=isolation)


class GradingStopped(Exception):
    """The instructor interrupted the run: no new learner is started."""


# The children running now. They are in sessions of their own, so Ctrl-C at the terminal
# does not reach them: `stop_all` ends them when the run is interrupted.
_live: set = set()
_live_lock = threading.Lock()
_stopping = threading.Event()


def stop_all() -> None:
    with _live_lock:
        _stopping.set()
        for proc in list(_live):
            _kill_group(proc, os.name == "posix", wait=False)


def _run(command: list[str], cwd: Path, env: dict, timeout: float) -> tuple[int | None, bool, str]:
    """Run the child in its own process group; on timeout, kill the whole group.

    Returns the exit code (None when it was killed), whether it ran out of time, and the
    end of what it printed. Only the end is kept: code that prints in an endless loop must
    not fill the memory or the disk.
    """
    posix = os.name == "posix"
    with _live_lock:
        if _stopping.is_set():
            raise GradingStopped()
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=posix,
        )
        _live.add(proc)
    tail = bytearray()

    def drain() -> None:
        for chunk in iter(lambda: proc.stdout.read1(1 << 16), b""):
            tail.extend(chunk)
            del tail[: max(0, len(tail) - OUTPUT_TAIL * 4)]

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        try:
            code, timed_out = proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            _kill_group(proc, posix)
            code, timed_out = None, True
    finally:
        with _live_lock:
            _live.discard(proc)
        # Whatever the learner's code started (a DataLoader worker, a stray subprocess)
        # goes with it, on success too; then the pipe closes and the reader ends.
        if posix:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        reader.join(timeout=10)
        proc.stdout.close()
    return code, timed_out, tail.decode("utf-8", errors="replace")[-OUTPUT_TAIL:]


def _run_forked(argv: list[str], log: Path, threads: int | None, timeout: float) -> tuple[int | None, bool, str]:
    """`_run` for a grading process forked from the fork server, which has imported torch and
    the grader already. What it prints goes to `log`, whose end explains a failure."""
    with _live_lock:
        if _stopping.is_set():
            raise GradingStopped()
        proc = _fork_server().Process(target=_check_in_fork, args=(argv, str(log), threads), daemon=True)
        proc.start()
        _live.add(proc)
    try:
        proc.join(timeout)
        timed_out = proc.exitcode is None
    finally:
        with _live_lock:
            _live.discard(proc)
        _kill_group(proc, posix=True)  # whatever it started goes with it, on success too
    tail = b""
    if log.is_file():
        with open(log, "rb") as f:
            f.seek(max(0, log.stat().st_size - OUTPUT_TAIL * 4))
            tail = f.read()
    return (None if timed_out else proc.exitcode), timed_out, tail.decode("utf-8", errors="replace")[-OUTPUT_TAIL:]


_fork_context = None


def _fork_server():
    """The multiprocessing context whose server forks the grading processes (started once)."""
    global _fork_context
    if _fork_context is None:
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
        # Imported once in the server, so that each learner costs their checks alone (a name
        # that does not import is skipped in silence: test_the_fork_server_preloads_the_grader).
        context.set_forkserver_preload(FORK_SERVER_PRELOAD)
        _fork_context = context
    return _fork_context


def _check_in_fork(argv: list[str], log: str, threads: int | None) -> None:
    """In the forked grading process: `python -m grader check ...`, its output into `log`."""
    os.setsid()  # a process group of its own, so that a timeout kills everything it started
    die_with_parent()
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails; the process goes on
    resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_FILE_LIMIT, OUTPUT_FILE_LIMIT))
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.dont_write_bytecode = True
    if threads:
        import torch

        torch.set_num_threads(threads)  # two learners graded at once must not each take every core
    from ..checking import main  # `check STAGE ...`, as the command line runs it

    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


def _kill_group(proc, posix: bool, wait: bool = True) -> None:
    """Kill a grading process (a subprocess.Popen or a multiprocessing.Process) and its group."""
    try:
        if posix:
            os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()  # also when it had no group of its own yet
    except (ProcessLookupError, OSError):
        pass
    if wait:
        proc.wait() if isinstance(proc, subprocess.Popen) else proc.join()


def _exit_note(code: int | None, tail: str) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        how = f"was killed by {name}"
        if name == "SIGKILL":
            how += " (often: it ran out of memory)"
        elif name == "SIGSEGV":
            how += " (a crash inside a compiled library)"
    else:
        how = f"ended with exit code {code} before writing any results"
    lines = [line for line in tail.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    last = errors[-1] if errors else (lines[-1] if lines else "")
    note = (
        f"The grader {how}, so none of this stage's checks could be counted. "
        "Code in your files may end the process (os._exit, a crash in a compiled library) when it is imported or run."
    )
    if last:
        note += f"\nLast output: {last.strip()[:300]}"
    return note


def sandbox_report(outcomes: list[Outcome]) -> str:
    """How the learners' code ran, from what each grading process found, never from a flag."""
    by_kind: dict[str, list[str]] = {}
    for o in outcomes:
        if o.isolation is not None:
            by_kind.setdefault(isolation_summary(o.isolation), []).append(o.learner)
    if not by_kind:
        return "Sandbox: no learner's code ran to the end, so there is nothing to say about it."
    lines = []
    for kind, learners in sorted(by_kind.items()):
        count = f"{len(learners)} learner(s)"
        if kind == "bubblewrap sandbox":
            lines.append(f"Sandbox: {count} graded in a bubblewrap sandbox.")
        else:
            lines.append(f"WARNING: {count} graded WITHOUT a sandbox: {kind}. See docs/ISOLATION.md.")
    return "\n".join(lines)


def _read_records(path: Path, stage: Stage, expected: list[ExpectedCheck] | None) -> tuple[list[Record], dict]:
    """The records of the grading process, and how it ran the learner's code."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    records = [Record(**r) for r in payload["records"]]
    isolation = payload["isolation"]
    if not isinstance(isolation, dict):
        raise ValueError("it does not say how the code ran")
    ids = [r.check_id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("a check appears twice")
    for r in records:
        if r.stage != stage.id:
            raise ValueError(f"a record is for stage {r.stage}, not {stage.id}")
        if not 0 <= float(r.points_earned) <= float(r.points_possible):
            raise ValueError(f"check {r.check_id} earned {r.points_earned} of {r.points_possible} points")
    if expected is not None:
        wanted = {c.check_id: c.points for c in expected}
        got = {r.check_id: float(r.points_possible) for r in records}
        if got != wanted:
            raise ValueError("its checks are not the stage's checks")
    return records, isolation


def learner_folders(submissions: Path) -> list[Path]:
    """One folder per learner; hidden folders and loose files are not learners. A learner
    "folder" that is a link is listed all the same, so that intake refuses it and says why."""
    if not submissions.is_dir():
        raise CourseError(f"{submissions} is not a folder. Give the folder that holds one folder per learner.")
    folders = [
        p for p in sorted(submissions.iterdir())
        if (p.is_symlink() or p.is_dir()) and not p.name.startswith((".", "__"))
    ]
    if not folders:
        raise CourseError(
            f"{submissions} has no learner folders. Put each learner's files in a folder named after them "
            f"(for example {submissions}/ada/bigram.py)."
        )
    return folders


def grade_class(
    course: Course,
    stage: Stage,
    submissions: Path,
    out: Path,
    workers: int = 1,
    timeout: float | None = None,
    exports: Iterable[str] = (),
    progress: Progress | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    isolate: bool = True,
) -> list[Outcome]:
    """Grade every learner folder under `submissions`; write their records, totals and exports to `out`.

    A learner whose records in `out` were written for the same files (their fingerprint) is
    not graded again: a run that was stopped, however, goes on where it stopped.
    """
    from . import exporters

    folders = learner_folders(submissions.resolve())
    out = out.resolve()
    if submissions.resolve() in (out, *out.parents):
        raise CourseError("Write the grades outside the submissions folder, so that nothing lands in a learner's files.")
    out.mkdir(parents=True, exist_ok=True)
    for partial in out.rglob(".*.partial"):  # what a killed run was writing; its learners are graded again
        partial.unlink(missing_ok=True)
    expected = expected_checks(stage)
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None

    salt = f"{stage.id}\0{'isolated' if isolate else 'in-process'}"

    def one(folder: Path) -> Outcome:
        learner = intake.shown(folder.name)
        try:
            outcome = grade_learner(folder, learner)
        except GradingStopped:
            raise
        except Exception as exc:  # noqa: BLE001 - one learner never stops the class
            note = (
                f"The grader could not grade this submission: {type(exc).__name__}: {intake.shown(str(exc))[:300]}. "
                "Nothing was counted; tell your instructor, who can grade it again."
            )
            outcome = Outcome(learner, error_records(stage, expected, note), note, 0.0, folder)
        if outcome.interrupted:
            return outcome  # no records: the next run grades this learner
        try:
            exporters.write_learner(out, outcome, stage, exports)
        except Exception as exc:  # noqa: BLE001 - the others' records and scores.csv are still written
            outcome.note = outcome.note or f"This learner's records could not be written ({type(exc).__name__}: {exc})."
        if progress:
            progress.update(outcome)
        if on_outcome:
            on_outcome(outcome)
        return outcome

    def grade_learner(folder: Path, learner: str) -> Outcome:
        try:
            taken = intake.take(folder, stage)
            key = intake.fingerprint(taken, salt)
        except intake.Refused as exc:
            key = intake.refusal_fingerprint(str(exc), salt)
            kept = exporters.read_learner(out, learner, stage, expected, key)
            return kept or Outcome(learner, error_records(stage, expected, str(exc)), str(exc), 0.0, folder, key)
        kept = exporters.read_learner(out, learner, stage, expected, key)
        if kept is not None:
            return kept
        outcome = grade_submission(course, stage, taken.folder, expected, timeout, learner=learner,
                                   threads=threads, isolate=isolate, forked=os.name == "posix")
        outcome.fingerprint = key
        return outcome

    if progress:
        progress.start()
    _stopping.clear()
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        outcomes = list(pool.map(one, folders))
    except BaseException:
        stop_all()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    if progress:
        progress.finish()
    exporters.write_scores_csv(out / "scores.csv", outcomes, expected)
    return outcomes


def command(course: Course, stage: Stage, args) -> int:
    """`python -m grader grade SUBMISSIONS --stage STAGE --out DIR`."""
    if course.is_release:
        raise CourseError("Grading a class needs the hidden checks and the reference, which a student release does not have.")
    if args.workers < 1:
        raise CourseError("--workers must be 1 or more.")
    if args.timeout is not None and args.timeout <= 0:
        raise CourseError("--timeout must be a number of seconds above 0.")
    folders = learner_folders(args.submissions.resolve())
    limit = hard_timeout(stage) if args.timeout is None else args.timeout
    isolate = not args.no_isolate
    if isolate:
        from ..sandbox import take_turns_with_the_child

        take_turns_with_the_child()  # before the fork server imports torch
    mode = "each in a process of its own, sandboxed where bubblewrap runs" if isolate else "in-process, NOT isolated: only for code you trust"
    print(
        f"Grading {len(folders)} submission(s) of {stage.id} ({stage.title}), {args.workers} at a time, {mode}; "
        f"each learner's grading stops after {limit:g} s.",
        flush=True,
    )
    started = time.perf_counter()
    outcomes = grade_class(
        course, stage, args.submissions, args.out, workers=args.workers, timeout=args.timeout,
        exports=args.export, progress=Progress(len(folders), sys.stdout), isolate=isolate,
    )
    elapsed = time.perf_counter() - started
    out = args.out.resolve()
    kept = sum(o.kept for o in outcomes)
    graded = len(outcomes) - kept
    print(f"\nGraded {graded} learner(s) in {elapsed:.0f} s ({elapsed / max(graded, 1):.1f} s each).")
    print(sandbox_report(outcomes))
    if kept:
        print(f"Kept {kept} learner(s) graded by an earlier run: their files are unchanged since.")
    print(f"  totals:  {out / 'scores.csv'}")
    print(f"  records: {out / 'records'}/<learner>.json")
    from .classreport import write_for_grade

    print(f"  report:  {write_for_grade(out, outcomes)}")
    for kind in args.export:
        where = out / "gradescope" / "<learner>" / "results.json" if kind == "gradescope" else out / "classroom" / "<learner>.json"
        print(f"  {kind}: {where}")
    stopped = [o for o in outcomes if o.note]
    if stopped:
        print(f"\n{len(stopped)} submission(s) could not be graded to the end; each check of theirs says why:")
        for o in stopped:
            print(f"  {o.learner}: {o.note.splitlines()[0]}")
    return 0
