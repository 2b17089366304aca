"""The report a learner reads: it fits their terminal, and it shows each check as it ends."""
from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from conftest import ROOT
from grader import report
from grader.course import load_course
from grader.mutants import load_mutants, write_mutant
from grader.results import Record

COURSE = load_course()
STAGE = COURSE.stage("02_bigram")
GRID = "\n".join(
    ["              0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19"]
    + [f"output {i:>2}  " + " ".join("#" if j <= i else "X" for j in range(20)) for i in range(20)]
)
LONG_MESSAGE = (
    "Head(x) (sizes: B=2, T=10, n_embd=4, head_size=3, block_size=12) is wrong at 54 of 60 positions "
    "(tolerance 1e-05 + 0.0001*|expected|). First: index [0, 0, 0]: got 0.128977, expected 0.0559988, "
    "index [0, 0, 1]: got -0.052012, expected -0.0869426.\n" + GRID + "\n"
    "Look at /a/rather/long/path/that/cannot/be/broken/at/a/space/because/it/has/none/attention.py, line 12."
)
GRADED = [{"path": "/home/learner/course/exercises/02_bigram/bigram.py", "sha256": "ab" * 32}]


def record(check_id, status, title, message="", visibility="public", duration=0.25):
    earned = 2 if status == "passed" else 0
    return Record("02_bigram", check_id, title, earned, 2, status, message, visibility, duration, GRADED)


RECORDS = [
    record("short", "passed", "counts are right"),
    record("long_title", "failed", "a title long enough that it has to be wrapped on a narrow terminal, "
           "because it says exactly what is checked and why", LONG_MESSAGE),
    record("hidden", "failed", "the same as the reference", "logits differ at (0, 1, 2)", visibility="hidden"),
    record("gpu", "skipped", "fast on a GPU", "skipped: needs CUDA"),
]


def words(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize("width", [40, 60, 80, 100, 132])
def test_every_line_fits_the_width_and_nothing_is_lost(width):
    text = report.render(STAGE, RECORDS, "exercises", hidden_not_run=3, unwritten=["generate"], width=width, seconds=12.34)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    # Wrapping moves words to the next line; it never drops one (long ones are cut, not lost).
    flat = "".join(words(text))
    for needle in ("".join(words(LONG_MESSAGE)), "".join(words(RECORDS[1].title)), "Score:2/6"):
        assert needle in flat
    # Continuation lines are indented under what they continue.
    checks = lines[: lines.index("Score: 2/6")]
    message_lines = [line for line in checks if "0.0559988" in line or "expected" in line]
    assert message_lines and all(line.startswith(" " * report.MESSAGE_INDENT) for line in message_lines)
    assert lines[-1] == "Took 12.3 s in all."


def test_the_header_says_what_was_graded():
    text = report.render(STAGE, RECORDS, "exercises", width=100)
    assert text.splitlines()[0] == "02_bigram  Bigram language model  [exercises]"
    assert f"graded: {GRADED[0]['path']} (sha256 {'ab' * 6})" in text.splitlines()[1]


def terminal_screen(output: str) -> list[str]:
    """What a terminal shows after `output`: a carriage return goes back to the line's start,
    and what follows overwrites what was there."""
    screen = []
    for physical in output.split("\n"):
        shown: list[str] = []
        for piece in physical.split("\r"):
            shown[: len(piece)] = piece
        screen.append("".join(shown).rstrip())
    return screen


class Pipe(io.StringIO):
    encoding = "utf-8"


class FakeTerminal(Pipe):
    def isatty(self):
        return True


def test_live_report_shows_each_check_when_it_ends():
    stream = Pipe()
    live = report.LiveReport(STAGE, "exercises", stream=stream, width=100)
    live.start()
    assert stream.getvalue() == "02_bigram  Bigram language model  [exercises]\n"
    live.stage_started(RECORDS, GRADED)
    for r in RECORDS:
        before = stream.getvalue()
        live.check_started(SimpleNamespace(title=r.title))
        live.check_finished(r)
        assert stream.getvalue().startswith(before) and r.title[:30] in stream.getvalue()[len(before):]
    live.finish(RECORDS, 0, [], "03_batching")
    text = stream.getvalue()
    assert re.fullmatch(r"Took \d+\.\d s in all\.", text.splitlines()[-1])
    assert "\r" not in text and "\x1b" not in text
    assert text == report.render(STAGE, RECORDS, "exercises", width=100, seconds=live_seconds(text)) + "\n"


def live_seconds(text: str) -> float:
    return float(re.search(r"Took (\d+\.\d) s in all\.", text).group(1))


def test_a_long_check_shows_it_is_running_on_a_terminal_and_the_line_goes_away(monkeypatch):
    monkeypatch.setattr(report, "RUNNING_SHOWN_AFTER", 0.2)
    stream = FakeTerminal()
    live = report.LiveReport(STAGE, "exercises", stream=stream, width=100)
    live.stage_started(RECORDS[:1], GRADED)
    live.check_started(SimpleNamespace(title=RECORDS[0].title))
    time.sleep(1.3)
    shown = terminal_screen(stream.getvalue())
    assert shown[-1].startswith("  running: counts are right (") and shown[-1].endswith(" s)")
    live.check_finished(RECORDS[0])
    live.finish(RECORDS[:1], 0, [], None)
    shown = terminal_screen(stream.getvalue())
    assert not any("running:" in line for line in shown)
    assert any(line.startswith("  ✓ counts are right") for line in shown)


def test_without_a_terminal_a_long_check_gets_one_plain_line(monkeypatch):
    monkeypatch.setattr(report, "RUNNING_LOGGED_AFTER", 0.2)
    stream = Pipe()
    live = report.LiveReport(STAGE, "exercises", stream=stream, width=100)
    live.stage_started(RECORDS[:1], GRADED)
    live.check_started(SimpleNamespace(title=RECORDS[0].title))
    time.sleep(1.5)
    live.check_finished(RECORDS[0])
    live.close()
    text = stream.getvalue()
    assert text.count("running: counts are right") == 1 and "\r" not in text


@pytest.fixture(scope="module")
def failing_submission(tmp_path_factory):
    """05_attention without its causal mask: long messages, dependency grids, a "fix first"."""
    stage = COURSE.stage("05_attention")
    mutant = next(m for m in load_mutants(stage) if m.name == "no_mask")
    folder = tmp_path_factory.mktemp("no_mask")
    write_mutant(mutant, ROOT / "solutions" / stage.id, folder / stage.id)
    return folder


@pytest.mark.parametrize("columns", [None, "72"])
def test_a_failing_report_fits_when_piped(failing_submission, columns):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = columns
    out = subprocess.run([sys.executable, "-m", "grader", "check", "05", "--impl", str(failing_submission)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    width = int(columns or 100)
    assert max(len(line) for line in lines) <= width, [line for line in lines if len(line) > width]
    flat = " ".join(out.stdout.split())
    assert "No causal mask reaches your scores: every position sees the whole sequence, future included." in flat
    assert "Fix first: " in out.stdout and "output 0  # X X" in out.stdout


def test_a_graded_file_is_hashed_only_when_it_is_a_regular_file(tmp_path):
    from grader.results import file_sha256, graded_files

    stage_file = tmp_path / "bigram.py"
    stage_file.write_bytes(b"x = 1\r\n")
    (tmp_path / "link.py").symlink_to(stage_file)
    os.mkfifo(tmp_path / "fifo.py")  # opening it to read would wait for a writer forever
    assert file_sha256(stage_file) == hashlib.sha256(b"x = 1\r\n").hexdigest()
    assert [file_sha256(tmp_path / name) for name in ("link.py", "fifo.py", "missing.py")] == [None, None, None]
    copy = tmp_path / "copy.py"
    copy.write_bytes(b"y = 2\n")
    # Isolated grading: the learner's path, and the bytes of the copy the child imported.
    assert graded_files([stage_file], [copy]) == [{"path": str(stage_file), "sha256": file_sha256(copy)}]
    odd = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.py")  # a name that is not UTF-8
    with open(odd, "wb") as f:
        f.write(b"y = 2\n")
    assert graded_files([odd]) == [{"path": f"{tmp_path}/caf\\xe9.py", "sha256": file_sha256(copy)}]
