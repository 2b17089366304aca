"""`grade`: a class of learners, each in a child process; one learner's crash, hang or exit
costs only that learner, with a message that says what happened. A run that is killed
resumes where it stopped."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from grader.classgrading.outcome import expected_checks
from grader.course import load_course
from grader.release import BEGIN, END, make_stub
from test_exporters import validate_classroom, validate_gradescope

STAGE = "02_bigram"
POINTS = load_course().stage(STAGE).points
TIMEOUT = 30  # seconds per learner: plenty for the rest of this class, even on a busy machine


def count_model_only() -> str:
    """The count model written, the nn.Embedding model still a stub: some of the points, not all."""
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


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "in-process"])
def test_grade_a_class(grader, tmp_path, isolate):
    learners = make_class(tmp_path / "class")
    before = {p: p.read_bytes() for p in (tmp_path / "class").rglob("*") if p.is_file()}
    out = grader("grade", str(tmp_path / "class"), "--stage", STAGE, "--out", str(tmp_path / "grades"),
                 "--workers", "2", "--timeout", str(TIMEOUT), "--export", "gradescope", "--export", "classroom",
                 *([] if isolate else ["--no-isolate"]))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Graded 7 learner(s)" in out.stdout and "Traceback" not in out.stdout + out.stderr
    # Whether the code was sandboxed comes from what each grading process found, not the flag.
    assert ("sandboxed where bubblewrap runs" in out.stdout) == isolate
    sandboxed = isolate and shutil.which("bwrap") is not None and os.environ.get("GRADER_SANDBOX") != "process"
    how = "bubblewrap sandbox" if sandboxed else ("separate process, NOT sandboxed" if isolate else "in-process, NOT isolated")
    # Nothing is written into the learners' folders.
    assert {p: p.read_bytes() for p in (tmp_path / "class").rglob("*") if p.is_file()} == before

    rows = {r["learner"]: r for r in csv.DictReader(open(tmp_path / "grades" / "scores.csv", encoding="utf-8"))}
    assert set(rows) == set(learners)
    assert {name: rows[name]["score"] for name in rows if name != "ada"} == {n: "0" for n in learners if n != "ada"}
    assert 0 < float(rows["ada"]["score"]) < POINTS  # the count model earns its checks, the stub model none
    assert all(rows[name]["max_score"] == f"{POINTS:g}" for name in rows)
    assert rows["ada"]["graded"] == rows["ben"]["graded"] == rows["cleo"]["graded"] == "yes"
    assert rows["ada"]["counts_match"] == "3" and rows["ada"]["generate_shape"] == "0"
    assert rows["ada"]["sandbox"].startswith(how) and rows["ben"]["sandbox"].startswith(how)
    assert rows["gus"]["sandbox"] == "learner code did not run"
    ran = 5 if isolate else 3  # isolated, the grading process outlives dev's os._exit and eve's crash
    if sandboxed:
        assert f"Sandbox: {ran} learner(s) graded in a bubblewrap sandbox." in out.stdout, out.stdout
    else:
        assert f"WARNING: {ran} learner(s) graded WITHOUT a sandbox: {how}" in out.stdout, out.stdout

    notes = {name: json.loads((tmp_path / "grades" / "records" / f"{name}.json").read_text()) for name in learners}
    assert notes["ada"]["isolation"]["sandboxed"] == sandboxed
    messages = {name: {r["message"] for r in payload["records"]} for name, payload in notes.items()}
    checks = len(expected_checks(load_course().stage(STAGE)))
    assert all(len(payload["records"]) == checks for payload in notes.values())
    assert any(m.startswith("Not implemented yet: build_vocab") for m in messages["ben"])
    (cleo,) = messages["cleo"]  # every check: the import failed
    assert cleo.startswith("Importing your code failed: RuntimeError: a bug at the top level (bigram.py, line 2")
    if isolate:  # the sandboxed child died on import: the grading process itself says so, check by check
        assert "ended the process that runs it (exit status 0)" in messages["dev"].pop()
        assert "was stopped by SIGSEGV" in messages["eve"].pop()
        stopped = ("fay", "gus")
    else:  # the grading process itself died
        assert "ended with exit code 0 before writing any results" in notes["dev"]["note"]
        assert "was killed by SIGSEGV" in notes["eve"]["note"]
        stopped = ("dev", "eve", "fay", "gus")
    assert notes["fay"]["note"].startswith(f"Grading stopped after {TIMEOUT} s")
    assert notes["gus"]["note"].startswith("No bigram.py in this submission")
    for name in ("dev", "eve", "fay", "gus"):
        assert {r["status"] for r in notes[name]["records"]} == {"error"}
    for name in stopped:
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


# --- killed and resumed -------------------------------------------------------------------------

TOY_SUITE = '''"""A stage small enough to grade a hundred learners in seconds."""
from grader import check
from grader.checks import CheckFailure


@check("add(2, 3) is 5", points=1)
def adds(impl):
    if impl.module("toy").add(2, 3) != 5:
        raise CheckFailure("add(2, 3) should be 5.")


@check("scale(xs, k) multiplies each item by k", points=2)
def scales(impl):
    got = impl.module("toy").scale([1, 2, 3], 2)
    if got != [2, 4, 6]:
        raise CheckFailure(f"scale([1, 2, 3], 2) should be [2, 4, 6], not {got}.")
'''

TOY_SOLUTIONS = [
    "def add(a, b):\n    return a + b\n\n\ndef scale(xs, k):\n    return [x * k for x in xs]\n",
    "def add(a, b):\n    return a - b\n\n\ndef scale(xs, k):\n    return [x * k for x in xs]\n",
    "def add(a, b):\n    return a + b\n\n\ndef scale(xs, k):\n    raise NotImplementedError\n",
    "def add(a, b):\n    raise NotImplementedError\n\n\ndef scale(xs, k):\n    return xs * k\n",
]


def toy_course(root):
    """A course of one tiny stage, with this project's grader."""
    shutil.copytree(ROOT / "grader", root / "grader", ignore=shutil.ignore_patterns("suites", "mutants", "__pycache__"))
    (root / "grader" / "mutants").mkdir()
    (root / "grader" / "mutants" / "__init__.py").write_text((ROOT / "grader" / "mutants" / "__init__.py").read_text())
    (root / "grader" / "suites" / "01_toy").mkdir(parents=True)
    (root / "grader" / "suites" / "01_toy" / "public.py").write_text(TOY_SUITE)
    (root / "solutions" / "01_toy").mkdir(parents=True)
    (root / "solutions" / "01_toy" / "toy.py").write_text(TOY_SOLUTIONS[0])
    (root / "course.toml").write_text(
        '[course]\nname = "Toy"\ntitle = "Toy"\n\n[[stage]]\nid = "01_toy"\ntitle = "Toy"\npoints = 3\n'
        'files = ["toy.py"]\nforbidden = []\ntime_limit = 30\ncheck_time_limit = 10\navailable = true\n'
    )
    return root


def grade_toy(submissions, out):
    return [sys.executable, "-m", "grader", "grade", str(submissions), "--stage", "01_toy", "--out", str(out),
            "--workers", "2", "--no-isolate"]


def test_a_killed_run_resumes_and_loses_nothing(tmp_path):
    """100 learners; the run is killed (SIGKILL) mid-way and started again: every learner
    graded before the kill keeps their records untouched, nobody is graded twice, and the
    CSV is the same as an uninterrupted run's, byte for byte."""
    course = toy_course(tmp_path / "course")
    submissions = tmp_path / "class"
    for i in range(100):
        (submissions / f"learner{i:03d}").mkdir(parents=True)
        (submissions / f"learner{i:03d}" / "toy.py").write_text(TOY_SOLUTIONS[i % len(TOY_SOLUTIONS)])
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")

    whole = subprocess.run(grade_toy(submissions, tmp_path / "whole"), cwd=course, env=env,
                           capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    expected_csv = (tmp_path / "whole" / "scores.csv").read_bytes()
    scores = [row.split(",")[1] for row in expected_csv.decode().splitlines()[1:]]
    assert len(scores) == 100 and sorted(set(scores)) == ["0", "1", "2", "3"]

    out = tmp_path / "resumed"
    records = out / "records"
    run = subprocess.Popen(grade_toy(submissions, out), cwd=course, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while (not records.is_dir() or len(list(records.glob("*.json"))) < 30) and time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    time.sleep(2)  # anything the killed run left behind would go on writing now
    before = {p.name: p.read_bytes() for p in records.glob("*.json")}
    assert 30 <= len(before) < 100, f"killed after {len(before)} learners"
    assert {p.name: p.read_bytes() for p in records.glob("*.json")} == before, "records changed after the kill"
    assert not (out / "scores.csv").exists()
    for text in before.values():
        json.loads(text)  # every record file is whole

    again = subprocess.run(grade_toy(submissions, out), cwd=course, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"Kept {len(before)} learner(s) graded by an earlier run" in again.stdout
    assert f"Graded {100 - len(before)} learner(s)" in again.stdout
    assert {name: (records / name).read_bytes() for name in before} == before, "a finished learner was graded again"
    assert (out / "scores.csv").read_bytes() == expected_csv
    assert not list(out.rglob("*.partial"))

    # A learner who hands in new code is graded again; the others are kept.
    (submissions / "learner001" / "toy.py").write_text(TOY_SOLUTIONS[0])
    third = subprocess.run(grade_toy(submissions, out), cwd=course, env=env,
                           capture_output=True, text=True, timeout=600)
    assert "Kept 99 learner(s)" in third.stdout and "Graded 1 learner(s)" in third.stdout
    assert json.loads((records / "learner001.json").read_text())["score"] == 3


def test_one_learner_never_stops_the_class(tmp_path, monkeypatch):
    """Learners whose folders break intake (a named pipe, a link to a classmate) and one whose
    grading raises inside the grader itself, in the middle of a class: each gets error records
    that say why, every other learner's grade is what it would be alone, scores.csv gives
    everyone a reason, and a rerun keeps the finished learners and grades the broken one."""
    from grader import intake
    from grader.classgrading.batch import grade_class

    course = load_course()
    stage = course.stage(STAGE)
    root = tmp_path / "class"
    solution = (ROOT / "solutions" / STAGE / "bigram.py").read_text()
    learners = {
        "a_honest": solution,
        "b_partial": count_model_only(),
        "d_raises": solution,
        "f_stub": (ROOT / "exercises" / STAGE / "bigram.py").read_text(),
    }
    for name, text in learners.items():
        (root / name).mkdir(parents=True)
        (root / name / "bigram.py").write_text(text)
    (root / "c_pipe").mkdir()
    os.mkfifo(root / "c_pipe" / "bigram.py")
    (root / "e_link").symlink_to(root / "a_honest")
    odd_name = os.fsdecode(os.fsencode(root) + b"/g_caf\xe9")  # a learner folder whose name is not UTF-8
    os.mkdir(odd_name)
    with open(os.path.join(odd_name, "bigram.py"), "w") as f:
        f.write(learners["a_honest"])

    real_fingerprint = intake.fingerprint

    def breaks_for_one(taken, salt):
        if taken.root.name == "d_raises":
            raise RuntimeError("the disk went away")
        return real_fingerprint(taken, salt)

    monkeypatch.setattr(intake, "fingerprint", breaks_for_one)
    out = tmp_path / "grades"
    outcomes = {o.learner: o for o in grade_class(course, stage, root, out, workers=2, isolate=False)}
    assert {name: o.score[0] for name, o in outcomes.items() if name != "b_partial"} == {
        "a_honest": POINTS, "c_pipe": 0, "d_raises": 0, "e_link": 0, "f_stub": 0, "g_caf\\xe9": POINTS,
    }
    assert 0 < outcomes["b_partial"].score[0] < POINTS
    assert (out / "records" / "g_caf\\xe9.json").is_file()
    assert "c_pipe/bigram.py is a named pipe" in outcomes["c_pipe"].note
    assert "e_link is a link. Links are not accepted" in outcomes["e_link"].note
    assert "could not grade this submission: RuntimeError: the disk went away" in outcomes["d_raises"].note
    checks = len(expected_checks(stage))
    for name in ("c_pipe", "d_raises", "e_link"):
        records = outcomes[name].records
        assert len(records) == checks and {r.status for r in records} == {"error"}
        assert all(r.message == outcomes[name].note for r in records)

    rows = {r["learner"]: r for r in csv.DictReader(open(out / "scores.csv", encoding="utf-8"))}
    assert set(rows) == set(outcomes)
    assert all(rows[name]["note"] for name in rows), {name: rows[name]["note"] for name in rows}
    assert rows["f_stub"]["note"].startswith(f"{checks} of {checks} checks did not pass; first, ")
    assert "Not implemented yet" in rows["f_stub"]["note"] and rows["a_honest"]["note"] == "Every check passed."

    monkeypatch.setattr(intake, "fingerprint", real_fingerprint)
    again = {o.learner: o for o in grade_class(course, stage, root, out, workers=2, isolate=False)}
    assert {name for name, o in again.items() if not o.kept} == {"d_raises"}
    assert again["d_raises"].score[0] == POINTS


def test_scores_csv_names_the_cause_of_an_import_crash(tmp_path):
    """A learner whose code crashes at import is graded to the end (every check: the import
    failed), and scores.csv says so instead of leaving the note empty."""
    from grader.classgrading.batch import grade_class

    course = load_course()
    root = tmp_path / "class"
    (root / "cleo").mkdir(parents=True)
    (root / "cleo" / "bigram.py").write_text("import torch\nraise RuntimeError('a bug at the top level')\n")
    grade_class(course, course.stage(STAGE), root, tmp_path / "grades", isolate=False)
    (row,) = csv.DictReader(open(tmp_path / "grades" / "scores.csv", encoding="utf-8"))
    assert row["graded"] == "yes"
    assert row["note"].startswith("Importing your code failed: RuntimeError: a bug at the top level")


def test_the_fork_server_preloads_the_grader():
    """multiprocessing skips a preload name that does not import without a word, and every
    learner would then pay for importing torch and the grader again."""
    import importlib

    from grader.classgrading.batch import FORK_SERVER_PRELOAD

    for name in FORK_SERVER_PRELOAD:
        importlib.import_module(name)

