"""`grade`: a class of learners, each in a child process; one learner's crash, hang or exit
costs only that learner, with a message that says what happened."""
import csv
import json

from conftest import ROOT
from grader.batch import expected_checks
from grader.course import load_course
from grader.release import BEGIN, END, make_stub
from test_exporters import validate_classroom, validate_gradescope

STAGE = "02_bigram"
TIMEOUT = 30  # seconds per learner: plenty for the rest of this class, even on a busy machine


def count_model_only() -> str:
    """The count model written, the nn.Embedding model still a stub: 10 of 24 points."""
    solution = (ROOT / "solutions" / STAGE / "bigram.py").read_text()
    head, model = solution.split("class BigramLanguageModel", 1)
    head = "".join(line for line in head.splitlines(keepends=True) if line.strip() not in (BEGIN, END))
    return make_stub(head + "class BigramLanguageModel" + model)


def make_class(root):
    stub = (ROOT / "exercises" / STAGE / "bigram.py").read_text()
    learners = {
        "ada": ("02_bigram/bigram.py", count_model_only()),  # the stage folder, as the repo has it
        "ben": ("bigram.py", stub),
        "cleo": ("bigram.py", "import torch\nraise RuntimeError('a bug at the top level')\n"),
        "dev": ("bigram.py", "import os\nos._exit(0)\n"),
        "eve": ("bigram.py", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"),
        "fay": ("bigram.py", "import time\nwhile True:\n    time.sleep(1)\n"),  # hangs at import
        "gus": ("notes.txt", "I forgot to hand in my code."),
    }
    for name, (path, text) in learners.items():
        (root / name / path).parent.mkdir(parents=True, exist_ok=True)
        (root / name / path).write_text(text)
    return learners


def test_grade_a_class(grader, tmp_path):
    learners = make_class(tmp_path / "class")
    before = {p: p.read_bytes() for p in (tmp_path / "class").rglob("*") if p.is_file()}
    out = grader("grade", str(tmp_path / "class"), "--stage", STAGE, "--out", str(tmp_path / "grades"),
                 "--workers", "2", "--timeout", str(TIMEOUT), "--export", "gradescope", "--export", "classroom")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Graded 7 learner(s)" in out.stdout and "Traceback" not in out.stdout + out.stderr
    # Nothing is written into the learners' folders.
    assert {p: p.read_bytes() for p in (tmp_path / "class").rglob("*") if p.is_file()} == before

    rows = {r["learner"]: r for r in csv.DictReader(open(tmp_path / "grades" / "scores.csv", encoding="utf-8"))}
    assert set(rows) == set(learners)
    assert {name: rows[name]["score"] for name in rows} == {n: "10" if n == "ada" else "0" for n in learners}
    assert all(rows[name]["max_score"] == "24" for name in rows)
    assert rows["ada"]["graded"] == rows["ben"]["graded"] == rows["cleo"]["graded"] == "yes"
    assert rows["ada"]["counts_match"] == "3" and rows["ada"]["generate_shape"] == "0"

    notes = {name: json.loads((tmp_path / "grades" / "records" / f"{name}.json").read_text()) for name in learners}
    messages = {name: {r["message"] for r in payload["records"]} for name, payload in notes.items()}
    checks = len(expected_checks(load_course().stage(STAGE)))
    assert all(len(payload["records"]) == checks for payload in notes.values())
    assert any(m.startswith("Not implemented yet: build_vocab") for m in messages["ben"])
    (cleo,) = messages["cleo"]  # every check: the import failed
    assert cleo.startswith("Importing your code failed: RuntimeError: a bug at the top level (bigram.py, line 2")
    assert "ended with exit code 0 before writing any results" in notes["dev"]["note"]
    assert "was killed by SIGSEGV" in notes["eve"]["note"]
    assert notes["fay"]["note"].startswith(f"Grading stopped after {TIMEOUT} s")
    assert notes["gus"]["note"].startswith("No bigram.py in this submission")
    for name in ("dev", "eve", "fay", "gus"):
        assert {r["status"] for r in notes[name]["records"]} == {"error"}
        assert rows[name]["graded"] == "no" and rows[name]["note"]

    for name in learners:
        gradescope = json.loads((tmp_path / "grades" / "gradescope" / name / "results.json").read_text())
        validate_gradescope(gradescope)
        assert gradescope["score"] == float(rows[name]["score"])
        classroom = json.loads((tmp_path / "grades" / "classroom" / f"{name}.json").read_text())
        validate_classroom(classroom)
        assert sum(t["score"] for t in classroom["tests"]) == float(rows[name]["score"])
    assert "Grading stopped after" in gradescope_output(tmp_path, "fay")


def gradescope_output(tmp_path, name):
    return json.loads((tmp_path / "grades" / "gradescope" / name / "results.json").read_text())["output"]


def test_grade_refuses_bad_input(grader, tmp_path):
    out = grader("grade", str(tmp_path / "nowhere"), "--stage", STAGE, "--out", str(tmp_path / "grades"))
    assert out.returncode == 2 and "is not a folder" in out.stderr
    (tmp_path / "class").mkdir()
    out = grader("grade", str(tmp_path / "class"), "--stage", STAGE, "--out", str(tmp_path / "grades"))
    assert out.returncode == 2 and "has no learner folders" in out.stderr
    (tmp_path / "class" / "ada").mkdir()
    out = grader("grade", str(tmp_path / "class"), "--stage", STAGE, "--out", str(tmp_path / "class" / "grades"))
    assert out.returncode == 2 and "outside the submissions folder" in out.stderr
    assert "Traceback" not in out.stderr
