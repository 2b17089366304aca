"""The CLI as a learner meets it: clear messages, honest exit codes, no tracebacks, no writes."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from grader.course import load_course


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def copy_stage(tmp_path, stage, source="solutions"):
    target = tmp_path / "submission" / stage
    shutil.copytree(ROOT / source / stage, target)
    return target


def course_with_10_unavailable(root):
    """A copy of this course in which 10_llama is not written yet."""
    shutil.copytree(ROOT / "grader", root / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("solutions", "exercises", "datasets"):
        (root / folder).symlink_to(ROOT / folder)
    toml = (ROOT / "course.toml").read_text()
    head, llama = toml.split('id = "10_llama"')
    (root / "course.toml").write_text(head + 'id = "10_llama"' + llama.replace("available = true", "available = false"))
    return root


def test_list_shows_every_stage(grader, tmp_path):
    out = grader("list")
    assert out.returncode == 0
    for stage in ("01_bpe", "05_attention", "10_llama"):
        assert stage in out.stdout
    out = grader("list", cwd=course_with_10_unavailable(tmp_path))
    (line,) = [line for line in out.stdout.splitlines() if "10_llama" in line]
    assert "not available yet" in line


def test_unknown_stage_suggests_the_right_id(grader):
    out = grader("check", "atention")
    assert out.returncode == 2
    assert "Did you mean 05_attention?" in out.stderr
    assert out.stdout == ""
    assert "Traceback" not in out.stderr + out.stdout


def test_a_stage_is_named_by_its_id_its_number_or_its_name(grader):
    from grader.course import CourseError

    course = load_course()
    for text in ("05_attention", "05", "5", "attention", "Attention", " 5 ", "5_attention"):
        assert course.find_stage(text).id == "05_attention", text
    assert course.find_stage("10").id == "10_llama" and course.find_stage("1").id == "01_bpe"
    # A number and a name that disagree are a question, not an answer.
    with pytest.raises(CourseError, match="Did you mean 05_attention"):
        course.find_stage("06_attention")
    out = grader("check", "attention")
    assert out.stdout.splitlines()[0].startswith("05_attention  ")


def test_stage_not_available_yet(grader, tmp_path):
    out = grader("check", "10_llama", cwd=course_with_10_unavailable(tmp_path))
    assert out.returncode == 2
    assert "not available yet" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_missing_path(grader, tmp_path):
    out = grader("check", "02_bigram", "--impl", str(tmp_path / "nowhere"))
    assert out.returncode == 2
    assert "no such folder" in out.stderr
    assert "Traceback" not in out.stderr


def test_reference_earns_every_point_and_writes_json(grader, tmp_path):
    out = grader("check", "02_bigram", "--impl", "solutions", "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stdout
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["score"] == payload["max_score"] == load_course().stage("02_bigram").points
    fields = {"stage", "check_id", "title", "points_earned", "points_possible", "status", "message", "visibility", "duration",
              "graded_files"}
    assert all(set(r) == fields for r in payload["records"])
    assert {r["visibility"] for r in payload["records"]} == {"public", "hidden"}
    # What was graded: the file's path and the sha256 of its bytes, in every record and the header.
    graded = ROOT / "solutions" / "02_bigram" / "bigram.py"
    sha256 = hashlib.sha256(graded.read_bytes()).hexdigest()
    assert payload["graded_files"] == [{"path": str(graded), "sha256": sha256}]
    assert all(r["graded_files"] == payload["graded_files"] for r in payload["records"])
    assert f"graded: solutions/02_bigram/bigram.py (sha256 {sha256[:12]})" in out.stdout.splitlines()[1]


def test_stubs_score_zero_with_guidance(grader):
    out = grader("check", "02_bigram")
    assert out.returncode == 1
    assert f"Score: 0/{load_course().stage('02_bigram').points:g}" in out.stdout
    assert "Not implemented yet: bigram_counts (bigram.py, line" in out.stdout
    assert "Still to implement (9): build_vocab, encode, decode, bigram_counts" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_syntax_error_is_one_paragraph(grader, tmp_path):
    stage = copy_stage(tmp_path, "02_bigram")
    (stage / "bigram.py").write_text((stage / "bigram.py").read_text() + "\ndef broken(:\n    pass\n")
    out = grader("check", "02_bigram", "--impl", str(stage.parent))
    assert out.returncode == 1
    assert "bigram.py has a syntax error on line" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_file_that_raises_at_import(grader, tmp_path):
    stage = copy_stage(tmp_path, "02_bigram")
    (stage / "bigram.py").write_text("import torch\nraise RuntimeError('boom')\n")
    out = grader("check", "02_bigram", "--impl", str(stage.parent))
    assert out.returncode == 1
    assert "Importing your code failed: RuntimeError: boom (bigram.py, line 2" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_learner_exception_names_their_line(grader, tmp_path):
    stage = copy_stage(tmp_path, "02_bigram")
    source = (stage / "bigram.py").read_text()
    (stage / "bigram.py").write_text(source.replace("return sorted(set(text))", "return sorted(set(text))[10**9]"))
    out = grader("check", "02_bigram", "--impl", str(stage.parent))
    assert out.returncode == 1
    assert "Your code raised IndexError" in out.stdout
    assert "bigram.py, line" in out.stdout


def test_forbidden_api_voids_the_stage(grader, tmp_path):
    stage = copy_stage(tmp_path, "01_bpe")
    (stage / "bpe.py").write_text("import tiktoken as t\n" + (stage / "bpe.py").read_text())
    out = grader("check", "01_bpe", "--impl", str(stage.parent))
    assert out.returncode == 1
    assert "forbidden API (bpe.py line 1 uses tiktoken)" in out.stdout
    assert "Score: 0/" in out.stdout


def test_grader_never_writes_into_learner_files(grader, tmp_path):
    stage = copy_stage(tmp_path, "02_bigram")
    before = snapshot(stage.parent)
    assert grader("check", "02_bigram", "--impl", str(stage.parent)).returncode == 0
    assert snapshot(stage.parent) == before


def test_same_code_same_score(grader, tmp_path):
    stage = copy_stage(tmp_path, "02_bigram")
    source = (stage / "bigram.py").read_text()
    # A partly wrong submission: its failing examples must be the same on every run.
    (stage / "bigram.py").write_text(source.replace("smoothed = counts.float() + smoothing", "smoothed = counts.float() + 0.5"))
    runs = []
    for i in range(2):
        grader("check", "02_bigram", "--impl", str(stage.parent), "--json", str(tmp_path / f"{i}.json"))
        records = json.loads((tmp_path / f"{i}.json").read_text())["records"]
        runs.append([{k: v for k, v in r.items() if k != "duration"} for r in records])
    assert runs[0] == runs[1]
    assert any(r["status"] == "failed" for r in runs[0])


@pytest.mark.parametrize("mode", [[], ["--isolate"]], ids=["in-process", "isolated"])
def test_each_check_shows_as_soon_as_it_ends_and_the_total_time_comes_last(tmp_path, mode):
    stage = copy_stage(tmp_path, "02_bigram")
    source = (stage / "bigram.py").read_text()
    # Generation is checked late in the suite: its first call slowed down, the run is still
    # going when the first check's line must already be on the screen.
    first_call = "        ### BEGIN SOLUTION\n        for _ in range(max_new_tokens):"
    slow = source.replace(first_call, "        __import__('time').sleep(0 if SLEPT else 3); SLEPT.append(1)\n" + first_call)
    assert slow != source
    (stage / "bigram.py").write_text(slow + "\nSLEPT = []\n")
    run = tmp_path / "elsewhere"  # a learner's current folder, which the grader must leave as it was
    run.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("COLUMNS", None)
    proc = subprocess.Popen([sys.executable, "-m", "grader", "check", "bigram", "--impl", str(stage.parent), *mode], cwd=run,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline()]
        while lines[-1] and "build_vocab" not in lines[-1]:  # the header, then the first check
            lines.append(proc.stdout.readline())
        first_check_shown = time.monotonic()
        rest = proc.stdout.read()
        assert proc.wait(timeout=600) == 0, proc.stderr.read()
        ended = time.monotonic()
    finally:
        proc.kill()
        proc.wait()
    assert lines[0].startswith("02_bigram  ") and lines[1].startswith("graded:") and lines[-2] == "\n"
    assert "build_vocab, encode and decode round-trip the text" in lines[-1] and " s\n" in lines[-1]
    # The 3 s of the slow check come after the first line: printed at the end, it would come with the rest.
    assert ended - first_check_shown > 2.5, "the first check's line came only when the run had ended"
    report = "".join(lines) + rest
    assert report.splitlines()[-1].startswith("Took ") and report.splitlines()[-1].endswith(" s in all.")
    assert "\r" not in report and "\x1b" not in report  # not a terminal: no control characters
    assert list(run.iterdir()) == []  # no .hypothesis/ left behind
