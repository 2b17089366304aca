"""Exporters: each format has the fields its platform documents, and adds up like the records.

Gradescope: "Autograder Specifications" (results.json). GitHub Classroom: the runner output
that education/autograding-grading-reporter reads (src/main.js, notify-classroom.js,
aggregate-results.js).
"""
import base64
import csv
import dataclasses
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT
from grader.classgrading.outcome import ExpectedCheck, Outcome
from grader.course import load_course
from grader.classgrading.exporters import classroom_results, gradescope_results, write_scores_csv
from grader.results import Record

GRADESCOPE_TOP = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
                  "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
GRADESCOPE_TEST = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format", "tags",
                   "visibility", "extra_data"}
GRADESCOPE_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
CLASSROOM_TOP = {"version", "status", "message", "max_score", "tests"}
CLASSROOM_TEST = {"name", "status", "score", "message", "test_code", "filename", "line_no", "execution_time", "duration"}


def validate_gradescope(results: dict) -> None:
    """A results.json Gradescope accepts: documented keys and values, a score, tests that add up."""
    assert set(results) <= GRADESCOPE_TOP, set(results) - GRADESCOPE_TOP
    assert isinstance(results["score"], (int, float))
    assert results.get("visibility", "visible") in GRADESCOPE_VISIBILITY
    assert results.get("stdout_visibility", "hidden") in GRADESCOPE_VISIBILITY
    assert isinstance(results["tests"], list) and results["tests"]
    for test in results["tests"]:
        assert set(test) <= GRADESCOPE_TEST, set(test) - GRADESCOPE_TEST
        assert isinstance(test["name"], str) and test["name"]
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert 0 <= test["score"] <= test["max_score"]
        assert test.get("status", "passed") in ("passed", "failed")
        assert test["visibility"] in GRADESCOPE_VISIBILITY
        assert isinstance(test["output"], str)
        json.dumps(test)
    assert sum(t["score"] for t in results["tests"]) == pytest.approx(results["score"])


def validate_classroom(results: dict) -> None:
    """A runner output the grading reporter reads: what it sums and what it prints are there."""
    assert set(results) <= CLASSROOM_TOP, set(results) - CLASSROOM_TOP
    assert results["version"] == 1
    assert results["status"] in ("pass", "fail", "error")
    assert isinstance(results["max_score"], (int, float)) and results["max_score"] >= 0
    for test in results["tests"]:
        assert set(test) <= CLASSROOM_TEST, set(test) - CLASSROOM_TEST
        assert isinstance(test["name"], str) and test["status"] in ("pass", "fail", "error")
        assert isinstance(test["score"], (int, float)) and test["score"] >= 0
        assert isinstance(test["message"], str)
    # notify-classroom.js: the points sent to Classroom are the sum of the tests' scores.
    assert sum(t["score"] for t in results["tests"]) <= results["max_score"]


def record(check_id, status, earned, possible, visibility="public", message=""):
    return Record("02_bigram", check_id, check_id.replace("_", " "), earned, possible, status, message, visibility, 0.25)


RECORDS = [
    record("counts", "passed", 3, 3),
    record("probs", "failed", 0, 2, message="Row 0 does not sum to 1."),
    record("nll", "error", 0, 2, message="Your code raised IndexError."),
    record("speed", "skipped", 0, 1, message="skipped: needs CUDA"),
    record("reference", "passed", 2, 2, visibility="hidden"),
    record("reference_2", "failed", 0, 2, visibility="hidden", message="logits differ at (0, 1, 2)"),
]


def test_gradescope_results_follow_the_specification():
    results = gradescope_results(RECORDS, execution_time=12.4)
    validate_gradescope(results)
    assert results["score"] == 5 and results["execution_time"] == 12
    by_name = {t["name"]: t for t in results["tests"]}
    assert by_name["counts"] == {**by_name["counts"], "score": 3, "max_score": 3, "status": "passed", "visibility": "visible"}
    assert by_name["probs"]["status"] == "failed" and by_name["probs"]["output"] == "Row 0 does not sum to 1."
    assert by_name["nll"]["status"] == "failed"
    # Hidden checks show once the instructor publishes the grades.
    assert {by_name["reference"]["visibility"], by_name["reference 2"]["visibility"]} == {"after_published"}
    # A skipped check is worth nothing either way.
    assert by_name["speed"]["max_score"] == 0 and "status" not in by_name["speed"]
    assert sum(t["max_score"] for t in results["tests"]) == 11


def test_classroom_results_follow_the_reporter():
    results = classroom_results(RECORDS)
    validate_classroom(results)
    assert results["status"] == "fail" and results["max_score"] == 11
    assert [t["status"] for t in results["tests"]] == ["pass", "fail", "error", "pass", "fail"]
    assert sum(t["score"] for t in results["tests"]) == 5  # what Classroom records
    assert classroom_results([r for r in RECORDS if r.status == "passed"])["status"] == "pass"
    assert classroom_results([record("a", "error", 0, 2), record("b", "error", 0, 1)])["status"] == "error"


def test_scores_csv_has_totals_then_each_check(tmp_path):
    expected = [ExpectedCheck(r.check_id, r.title, r.points_possible, r.visibility) for r in RECORDS]
    outcomes = [
        Outcome("ben", RECORDS),
        Outcome("ada", [record(c.check_id, "error", 0, c.points, message="timed out") for c in expected], note="Grading stopped after 9 s."),
    ]
    write_scores_csv(tmp_path / "scores.csv", outcomes, expected)
    rows = list(csv.DictReader(open(tmp_path / "scores.csv", encoding="utf-8")))
    assert [r["learner"] for r in rows] == ["ada", "ben"]
    assert rows[1]["score"] == "5" and rows[1]["max_score"] == "11" and rows[1]["counts"] == "3" and rows[1]["speed"] == ""
    assert rows[0]["graded"] == "no" and rows[0]["note"] == "Grading stopped after 9 s." and rows[0]["score"] == "0"
    assert "checks did not pass; first, " in rows[1]["note"]  # graded to the end, and still a reason


def test_exporters_command_line(tmp_path):
    from grader.results import write_json

    write_json(RECORDS, tmp_path / "records.json")
    out = subprocess.run([sys.executable, "-m", "grader.classgrading.exporters", "classroom", str(tmp_path / "records.json"), "--base64"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("result=")
    validate_classroom(json.loads(base64.b64decode(out.stdout.strip()[len("result="):])))
    out = subprocess.run([sys.executable, "-m", "grader.classgrading.exporters", "gradescope", str(tmp_path / "records.json"), str(tmp_path / "results.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    validate_gradescope(json.loads((tmp_path / "results.json").read_text()))


def test_gradescope_zip_grades_a_submission(grader, tmp_path):
    """The zip has what Gradescope runs, and its run_autograder writes a valid results.json."""
    zip_path = tmp_path / "autograder.zip"
    out = grader("gradescope", "02_bigram", "--zip", str(zip_path))
    assert out.returncode == 0, out.stdout + out.stderr
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        for script in ("setup.sh", "run_autograder"):
            assert stat.S_IMODE(zf.getinfo(script).external_attr >> 16) & stat.S_IXUSR
        zf.extractall(tmp_path / "autograder" / "source")
    assert {"scratchgpt/grader/suites/02_bigram/hidden.py", "scratchgpt/solutions/02_bigram/bigram.py", "scratchgpt/course.toml"} <= names
    # Only what 02 needs: its suites, its reference and the earlier one's, never a later
    # stage's answers or hidden checks, the mutants or the project's tests.
    shipped = {n.split("/")[2] for n in names if n.startswith(("scratchgpt/solutions/", "scratchgpt/exercises/"))}
    assert shipped == {"01_bpe", "02_bigram"}
    assert {n.split("/")[3] for n in names if n.startswith("scratchgpt/grader/suites/")} == {"02_bigram"}
    assert not any(n.startswith(("scratchgpt/tests/", "scratchgpt/grader/mutants/", "scratchgpt/docs/")) for n in names)

    autograder = tmp_path / "autograder"
    (autograder / "submission" / "02_bigram").mkdir(parents=True)  # learners may upload the folder
    (autograder / "submission" / "02_bigram" / "bigram.py").write_text((ROOT / "exercises" / "02_bigram" / "bigram.py").read_text())
    env = dict(os.environ, AUTOGRADER_ROOT=str(autograder), SCRATCHGPT_PYTHON=sys.executable)
    run = subprocess.run(["bash", str(autograder / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((autograder / "results" / "results.json").read_text())
    validate_gradescope(results)
    from grader.classgrading.outcome import expected_checks

    assert results["score"] == 0 and len(results["tests"]) == len(expected_checks(load_course().stage("02_bigram")))
    assert "Not implemented yet" in results["tests"][0]["output"]
    assert {t["visibility"] for t in results["tests"]} == {"visible", "after_published"}

    # What the zip holds is enough to grade: a correct submission earns every point.
    (autograder / "submission" / "02_bigram" / "bigram.py").write_text((ROOT / "solutions" / "02_bigram" / "bigram.py").read_text())
    run = subprocess.run(["bash", str(autograder / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=300)
    results = json.loads((autograder / "results" / "results.json").read_text())
    assert results["score"] == load_course().stage("02_bigram").points, results.get("output")

    # A submission that links to the autograder's own copy of the reference: refused, 0 points.
    shutil.rmtree(autograder / "submission")
    (autograder / "submission").mkdir()
    (autograder / "submission" / "bigram.py").symlink_to(autograder / "source" / "scratchgpt" / "solutions" / "02_bigram" / "bigram.py")
    run = subprocess.run(["bash", str(autograder / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((autograder / "results" / "results.json").read_text())
    validate_gradescope(results)
    assert results["score"] == 0 and "is a link. Links are not accepted" in results["output"]
    assert all("Links are not accepted" in t["output"] for t in results["tests"])


def test_every_export_says_what_was_graded(tmp_path):
    graded = [{"path": "/submissions/ada/02_bigram/bigram.py", "sha256": "0123456789abcdef" * 4}]
    records = [dataclasses.replace(r, graded_files=graded) for r in RECORDS]
    gradescope = gradescope_results(records)
    validate_gradescope(gradescope)
    assert gradescope["extra_data"] == {"graded_files": graded}
    assert f"{graded[0]['path']} (sha256 {graded[0]['sha256']})" in gradescope["output"]
    classroom = classroom_results(records)
    validate_classroom(classroom)
    assert graded[0]["sha256"] in classroom["message"]
    expected = [ExpectedCheck(r.check_id, r.title, r.points_possible, r.visibility) for r in records]
    write_scores_csv(tmp_path / "scores.csv", [Outcome("ada", records), Outcome("ben", RECORDS, note="No bigram.py.")], expected)
    rows = {r["learner"]: r for r in csv.DictReader(open(tmp_path / "scores.csv", encoding="utf-8"))}
    assert rows["ada"]["graded_files"] == f"{graded[0]['path']} sha256:{graded[0]['sha256']}"
    assert rows["ben"]["graded_files"] == ""  # not graded: no file to name
