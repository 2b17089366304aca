"""The terminal report: a learner reads it in ten seconds and knows what to fix first.

`check` shows it live (`LiveReport`): the header, then each check's line as soon as the check
ends, then the score and the time it all took. `render` gives the same text at once. Every
line fits the terminal (or 100 columns when the output goes to a file or a pipe).
"""
from __future__ import annotations

import shutil
import sys
import textwrap
import threading
import time
from pathlib import Path

from .course import Stage
from .results import ERROR, FAILED, PASSED, SKIPPED, Record, score

WIDTH_WITHOUT_TERMINAL = 100
NARROWEST = 40  # below this a report cannot be laid out; lines may then be longer than the terminal
MESSAGE_INDENT = 6  # a check's message sits under its title
RUNNING_SHOWN_AFTER = 2.0  # seconds before a terminal shows which check is running
RUNNING_LOGGED_AFTER = 10.0  # ... and before a file or a pipe gets one plain line saying so
SHA256_SHOWN = 12  # hex digits of a graded file's sha256 in the header; the records keep all 64
# A message's diagnosis (what the learner most likely did wrong, as opposed to the symptom the
# check saw) is the line that starts with this; suites write it with grader.checks.cause().
# "Fix first" quotes it.
LIKELY_CAUSE = "Likely cause: "


def report_width() -> int:
    """The columns to wrap at: $COLUMNS when set, else the terminal's width, else 100."""
    return max(NARROWEST, shutil.get_terminal_size((WIDTH_WITHOUT_TERMINAL, 24)).columns)


def _marks(stream) -> dict[str, str]:
    fancy = {PASSED: "✓", FAILED: "✗", ERROR: "!", SKIPPED: "-"}
    try:
        "".join(fancy.values()).encode(getattr(stream, "encoding", None) or "ascii")
        return fancy
    except (UnicodeEncodeError, LookupError):
        return {PASSED: "+", FAILED: "x", ERROR: "!", SKIPPED: "-"}


def _fit(line: str, width: int, hang: int = 2) -> list[str]:
    """`line` as lines of at most `width` columns; continuation lines indented `hang` more."""
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip(" ")))
    return textwrap.wrap(
        line.strip(), width, initial_indent=indent, subsequent_indent=indent + " " * hang, break_on_hyphens=False
    )


def _shown_path(path: str) -> str:
    """A graded file's path, relative to the current folder when it is inside it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _num(x: float) -> str:
    return f"{x:g}"


class _Layout:
    """The report's lines at one width; the check lines are aligned on the longest title."""

    POINTS = 7  # "skipped", or "10/10"
    TIME = 7  # "123.4 s"
    HIDDEN = " (hidden)"

    def __init__(self, width: int, checks: list, stream) -> None:
        """`checks`: the checks (or records) to be shown, for their titles and visibility."""
        self.width = width
        self._previous_message = ""  # the message of the check before, when it failed
        self.marks = _marks(stream)
        # A learner's copy has no hidden checks: their titles get the room of the "(hidden)" mark.
        hidden = any(c.visibility == "hidden" for c in checks)
        room = width - 4 - (2 + self.POINTS + 2 + self.TIME + (len(self.HIDDEN) if hidden else 0))
        self.title_width = max(1, min(max((len(c.title) for c in checks), default=10), room))

    def header(self, stage: Stage, label: str) -> list[str]:
        return _fit(f"{stage.id}  {stage.title}  [{label}]", self.width)

    def files(self, graded_files: list[dict]) -> list[str]:
        lines = []
        for f in graded_files:
            sha = f"sha256 {f['sha256'][:SHA256_SHOWN]}" if f["sha256"] else "not a readable file"
            lines += _fit(f"graded: {_shown_path(f['path'])} ({sha})", self.width)
        return lines + [""]

    def check(self, r: Record) -> list[str]:
        points = "skipped" if r.status == SKIPPED else f"{_num(r.points_earned)}/{_num(r.points_possible)}"
        took = f"{r.duration:.1f} s"
        hidden = self.HIDDEN if r.visibility == "hidden" else ""
        titles = textwrap.wrap(r.title, self.title_width, break_on_hyphens=False) or [""]
        lines = [f"  {self.marks[r.status]} {titles[0]:<{self.title_width}}  {points:>{self.POINTS}}  {took:>{self.TIME}}{hidden}"]
        lines += [f"    {rest}" for rest in titles[1:]]
        # A cause that checks in a row share (an import error, a syntax error, a forbidden API:
        # the runner gives every check the same message) is said once, under the first of them.
        if r.status != PASSED and r.message and r.message != self._previous_message:
            lines += self.message(r.message)
        self._previous_message = r.message if r.status != PASSED else ""
        return lines

    def message(self, message: str) -> list[str]:
        out = []
        for line in message.splitlines():
            # Grids and code keep their layout where they fit; prose is wrapped.
            out += _fit(" " * MESSAGE_INDENT + line, self.width, hang=0 if not line.startswith((" ", "output ")) else 2)
        return out

    def summary(
        self,
        records: list[Record],
        hidden_not_run: int,
        unwritten: list[str],
        next_stage: str | None,
        seconds: float | None,
    ) -> list[str]:
        earned, possible = score(records)
        lines = ["", f"Score: {_num(earned)}/{_num(possible)}"]
        skipped = [r for r in records if r.status == SKIPPED]
        if skipped:
            lines.append(f"{len(skipped)} check(s) skipped here and not counted: {skipped[0].message}")
        if hidden_not_run:
            lines.append(
                f"{hidden_not_run} hidden check(s) exist for this stage; they run when your instructor grades it."
            )
        lines.extend(_fix_first(records, unwritten, next_stage))
        if seconds is not None:
            lines.append(f"Took {seconds:.1f} s in all.")
        return [part for line in lines for part in _fit(line, self.width)]


def render(
    stage: Stage,
    records: list[Record],
    label: str,
    hidden_not_run: int = 0,
    unwritten: list[str] = (),
    next_stage: str | None = None,
    width: int | None = None,
    seconds: float | None = None,
) -> str:
    """The whole report at once: what `LiveReport` prints, line for line."""
    layout = _Layout(width or report_width(), records, sys.stdout)
    lines = layout.header(stage, label)
    lines += layout.files(records[0].graded_files if records else [])
    for r in records:
        lines += layout.check(r)
    lines += layout.summary(records, hidden_not_run, unwritten, next_stage, seconds)
    return "\n".join(lines)


class LiveReport:
    """The report of `check`, printed as the checks run (the runner's StageProgress calls).

    On a terminal, a check that runs longer than RUNNING_SHOWN_AFTER shows a line
    "running: TITLE (5 s)", rewritten in place every second and erased when the check ends.
    In a file or a pipe there are no control characters: a check that runs longer than
    RUNNING_LOGGED_AFTER gets one plain line instead.
    """

    def __init__(
        self, stage: Stage, label: str, stream=None, width: int | None = None, started: float | None = None
    ) -> None:
        # Taken now: while a check runs, sys.stdout is redirected to capture the learner's prints.
        self.stream = stream or sys.stdout
        self.stage = stage
        self.label = label
        self.width = width or report_width()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.perf_counter() if started is None else started  # for the total time
        self.layout = _Layout(self.width, [], self.stream)
        self._lock = threading.Lock()
        self._running: tuple[str, float] | None = None  # the title of the check running, since when
        self._shown = ""  # the running line now on the terminal
        self._logged = False  # this check's plain "running" line is written
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def start(self) -> None:
        self._write(self.layout.header(self.stage, self.label))

    # -- the runner's calls (runner.StageProgress) -------------------------------------------

    def stage_started(self, checks: list, graded_files: list[dict]) -> None:
        self.layout = _Layout(self.width, checks, self.stream)
        self._write(self.layout.files(graded_files))

    def check_started(self, check) -> None:
        with self._lock:
            self._running = (check.title, time.perf_counter())
            self._logged = False
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="report-running-line", daemon=True)
            self._ticker.start()

    def check_finished(self, record: Record) -> None:
        with self._lock:
            self._running = None
            self._erase()
            self._write_locked(self.layout.check(record))

    def finish(self, records: list[Record], hidden_not_run: int, unwritten: list[str], next_stage: str | None) -> None:
        self.close()
        seconds = time.perf_counter() - self.started
        self._write(self.layout.summary(records, hidden_not_run, unwritten, next_stage, seconds))

    def close(self) -> None:
        """Stop the running line and erase it (also when the run is interrupted)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            self._running = None
            self._erase()

    # -- writing -------------------------------------------------------------------------------

    def _write(self, lines: list[str]) -> None:
        with self._lock:
            self._write_locked(lines)

    def _write_locked(self, lines: list[str]) -> None:
        if lines:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()

    def _erase(self) -> None:
        if self._shown:
            # Spaces over the running line rather than an escape code: every terminal erases that way.
            self.stream.write("\r" + " " * len(self._shown) + "\r")
            self.stream.flush()
            self._shown = ""

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                if self._running is None:
                    continue
                title, since = self._running
                elapsed = time.perf_counter() - since
                try:
                    if self.tty and elapsed >= RUNNING_SHOWN_AFTER:
                        line = f"  running: {title} ({elapsed:.0f} s)"[: self.width - 1]
                        if line == self._shown:
                            continue
                        self.stream.write("\r" + line + " " * max(0, len(self._shown) - len(line)))
                        self.stream.flush()
                        self._shown = line
                    elif not self.tty and elapsed >= RUNNING_LOGGED_AFTER and not self._logged:
                        self._logged = True
                        self._write_locked(_fit(f"  running: {title} (over {RUNNING_LOGGED_AFTER:.0f} s so far)", self.width))
                except (OSError, ValueError):  # the output was closed (piped into `head`): nothing to show
                    return


def _fix_first(records: list[Record], unwritten: list[str], next_stage: str | None) -> list[str]:
    problems = [r for r in records if r.status in (FAILED, ERROR)]
    if not problems:
        if not records:
            return []
        if next_stage is None:
            return ["Every check passed, and that was the last stage: the end of its handout says where to go from here."]
        return [f"Every check passed. On to {next_stage}!"]
    todo = [r for r in problems if r.message.startswith("Not implemented yet")]
    left = ["", f"Still to implement ({len(unwritten)}): {', '.join(unwritten)}."] if unwritten else []
    if len(todo) == len(problems):
        return left
    first = next(r for r in problems if not r.message.startswith("Not implemented yet"))
    return ["", f"Fix first: {first.title}: {diagnosis(first.message)}"] + left[1:]


def diagnosis(message: str) -> str:
    """What a failure message says the learner should fix: its "Likely cause" line, without the
    label, when it has one, else its first line (a message that states its cause up front)."""
    lines = message.splitlines()
    cause = next((line for line in lines if line.startswith(LIKELY_CAUSE)), None)
    return cause[len(LIKELY_CAUSE):] if cause else (lines[0] if lines else "")
