"""The class report: `grade` writes report.html, `report` builds it from grade's records and from
Gradescope's results; a real headless browser renders it, with the class's numbers, and
learners' names and messages stay text, never markup."""
import base64
import csv
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import ROOT
from grader.classgrading import classreport
from grader.course import CourseError, load_course
from grader.mutants import load_mutants, write_mutant
from grader.results import Record

STAGE = "02_bigram"
HOSTILE_NAME = "<img src=x onerror=document.title=1>"  # a learner's folder name
HOSTILE_MESSAGE = "<script>document.title='pwned'</script>"  # what a learner's exception says
PNG = b"\x89PNG\r\n\x1a\n"


def mutant(name):
    (found,) = [m for m in load_mutants(load_course().stage(STAGE)) if m.name == name]
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A small class graded once: right, stub, two learners with one known bug and one with
    another, an import error, and a learner who handed in no code."""
    root = tmp_path_factory.mktemp("classreport")
    submissions = root / "class"
    solutions = ROOT / "solutions" / STAGE
    for name, source in {"ada": solutions, "ben": ROOT / "exercises" / STAGE}.items():
        (submissions / name).mkdir(parents=True)
        shutil.copy(source / "bigram.py", submissions / name / "bigram.py")
    for name, bug in {"cara": "counts_transposed", HOSTILE_NAME: "counts_transposed", "dan": "loss_summed"}.items():
        write_mutant(mutant(bug), solutions, submissions / name / STAGE)
    (submissions / "cleo").mkdir()
    (submissions / "cleo" / "bigram.py").write_text(f"raise RuntimeError({HOSTILE_MESSAGE!r})\n")
    (submissions / "gus").mkdir()
    (submissions / "gus" / "notes.txt").write_text("I forgot to hand in my code.")
    out = root / "grades"
    done = subprocess.run(
        [sys.executable, "-m", "grader", "grade", str(submissions), "--stage", STAGE, "--out", str(out),
         "--workers", "2", "--no-isolate", "--export", "gradescope"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"report:  {out / 'report.html'}" in done.stdout
    return out


def expected_numbers(out: Path) -> dict:
    """The class's numbers, from scores.csv and the records (not from the report's code)."""
    rows = list(csv.DictReader(open(out / "scores.csv", encoding="utf-8")))
    scores = [float(r["score"]) for r in rows]
    records = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in (out / "records").glob("*.json")}
    graded = [payload for payload in records.values() if not payload["note"]]
    checks = {}
    for payload in graded:
        for r in payload["records"]:
            passed, counted = checks.get(r["title"], (0, 0))
            checks[r["title"]] = (passed + (r["status"] == "passed"), counted + (r["status"] != "skipped"))
    return {
        "learners": len(rows), "graded": len(graded), "checks": checks,
        "stats": [statistics.fmean(scores), statistics.median(scores), min(scores), max(scores)],
        "max": {float(r["max_score"]) for r in rows},
    }


class Page(HTMLParser):
    """What a browser made of the page: its elements, and each table's rows as cell texts."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.rows, self.title, self._cell, self._in_title = [], [], "", None, False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        self._in_title = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.title += data

    def row(self, first_cell_start: str) -> list[str]:
        found = [r for r in self.rows if r and r[0].startswith(first_cell_start)]
        assert len(found) == 1, f"{first_cell_start!r}: {found}"
        return found[0]


def headless_browsers() -> tuple[str, ...]:
    """The browsers `python course.py test` looks for (and installs the first of)."""
    spec = importlib.util.spec_from_file_location("course_setup", ROOT / "course.py")
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)
    return setup.HEADLESS_BROWSERS


def browser() -> str:
    for name in headless_browsers():
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "No headless browser found to open the class report (looked for " + ", ".join(headless_browsers()) + "). "
        "`python course.py test` installs chromium-headless-shell on Debian or Ubuntu when run as root; "
        "elsewhere install Chromium (`apt-get install chromium-headless-shell`, `brew install chromium`).",
        pytrace=False,
    )


def render(page: Path, *extra: str) -> subprocess.CompletedProcess:
    """The page in a headless browser, offline: no network is asked for (the page loads nothing)."""
    flags = ["--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-extensions", "--hide-scrollbars"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
    with tempfile.TemporaryDirectory(prefix="browser-profile-") as profile:
        done = subprocess.run([browser(), *flags, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def dom(page: Path) -> Page:
    return Page(render(page, "--dump-dom").stdout)


def number(x: float) -> str:
    return f"{x:g}" if float(x).is_integer() else f"{x:.3g}"


def assert_reports_the_class(page: Page, want: dict) -> None:
    # The numbers, as the browser shows them.
    (top,) = want["max"]
    assert page.title == f"Class report: {STAGE}"
    assert page.row(str(want["learners"]))[1:] == [number(x) for x in want["stats"]] + [number(top)]
    for title, (passed, counted) in want["checks"].items():
        assert page.row(title)[2] == f"{passed} of {counted}", title
    graded = want["graded"]
    transposed = page.row(f"2 of {graded}")
    assert mutant("counts_transposed").bug in transposed[1].lower() and "counts_transposed" in transposed[1]
    assert "cara" in transposed[2] and HOSTILE_NAME in transposed[2]
    summed = [r for r in page.rows if "loss_summed" in " ".join(r)]
    assert len(summed) == 1 and summed[0][0] == f"1 of {graded}" and "dan" in summed[0][2]
    assert any(r[0] == f"1 of {graded}" and r[1].startswith("Not implemented yet") and "ben" in r[2] for r in page.rows)
    assert any(HOSTILE_MESSAGE in r[1] and "cleo" in r[2] for r in page.rows if r[0] == f"1 of {graded}")
    # One problem per learner who lost points: the transposed pair, dan, ben and cleo; no bug dan does not have.
    assert len([r for r in page.rows if r and r[0].endswith(f" of {graded}")]) == 4
    assert any(r[0] == "gus" and r[1].startswith("No bigram.py in this submission") for r in page.rows)
    checks = len(want["checks"])
    assert page.row("ada")[1:4] == [f"{number(top)} / {number(top)}", f"{checks} of {checks}", "Every check passed."]
    # Learners' text stayed text: no element of theirs, no script, nothing loaded from outside.
    assert page.row(HOSTILE_NAME)[0] == HOSTILE_NAME
    assert not [t for t, _ in page.tags if t == "script"]
    assert not [a for _, attrs in page.tags for a in attrs if a.startswith("on")]
    images = [attrs["src"] for t, attrs in page.tags if t == "img"]
    assert len(images) == 2 and all(src.startswith("data:image/png;base64,") for src in images)
    assert all(base64.b64decode(src.split(",", 1)[1]).startswith(PNG) for src in images)


def test_grade_writes_a_class_report_that_a_browser_renders(graded, tmp_path):
    page = graded / "report.html"
    assert sorted(p.name for p in (graded / "report").iterdir()) == ["pass_rates.png", "scores.png"]
    assert all((graded / "report" / p).read_bytes().startswith(PNG) for p in ("pass_rates.png", "scores.png"))
    assert_reports_the_class(dom(page), expected_numbers(graded))
    shot = tmp_path / "report.png"
    render(page, f"--screenshot={shot}", "--window-size=1100,2400")
    assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 20_000


@pytest.mark.parametrize("folder", ["records", "gradescope", "."], ids=["records", "gradescope", "grade-output"])
def test_report_command_builds_the_same_report(graded, grader, tmp_path, folder):
    page = tmp_path / "class.html"
    done = grader("report", str(graded / folder), "--out", str(page))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Class report of 7 learners: {page}" in done.stdout
    assert (tmp_path / "class" / "scores.png").read_bytes().startswith(PNG)
    assert_reports_the_class(dom(page), expected_numbers(graded))


def record(check_id: str, status: str, message: str = "", title: str = "") -> Record:
    earned = 1.0 if status == "passed" else 0.0
    return Record(STAGE, check_id, title or f"check {check_id}", earned, 1.0, status, message, "public", 0.0)


def test_report_reads_what_it_can_and_says_what_it_could_not(tmp_path, grader):
    records = tmp_path / "records"
    records.mkdir()
    good = {"learner": "ada", "stage": STAGE, "note": "",
            "records": [{**record("a", "passed").__dict__, "a_field_added_later": 1}]}
    (records / "ada.json").write_text(json.dumps(good))
    (records / "broken.json").write_text("{not json")
    (records / "liar.json").write_text(json.dumps({**good, "learner": "liar", "records": [{**good["records"][0], "points_earned": "all"}]}))
    (records / "link.json").symlink_to(records / "ada.json")
    (records / "eve").mkdir()  # a learner's folder without Gradescope's results.json
    done = grader("report", str(records))
    assert done.returncode == 0, done.stdout + done.stderr
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Class report of 1 learners" in done.stdout and "4 file(s) could not be read" in done.stdout
    for why in ("broken.json: not read", "liar.json: not read (a record&#x27;s points_earned is not a number)",
                "link.json: a link, not followed", "eve/: no results.json"):
        assert why in text, why
    empty = tmp_path / "empty"
    empty.mkdir()
    done = grader("report", str(empty))
    assert done.returncode == 2 and "No learner's results in" in done.stderr and "Traceback" not in done.stderr


def test_each_learner_counts_once_under_the_first_bug_named_or_the_first_sentence():
    mutants = load_mutants(load_course().stage(STAGE))
    bug, untied, last, softmax = (mutant(name) for name in (
        "counts_transposed", "no_gradient_to_table", "generate_first_position", "generate_softmax_wrong_dim"))
    assert last.caught_by == softmax.caught_by
    named = f"Your counts look {bug.message}: the grader says so."
    both = f"Use the {last.message} and softmax over {softmax.message}."
    results = [
        classreport.LearnerResult("a", [record(bug.caught_by, "failed", named), record("x", "failed", "Wrong at 3 of 9. More.")]),
        classreport.LearnerResult("b", [record(bug.caught_by, "failed", named)]),
        classreport.LearnerResult("c", [record("x", "failed", "Wrong at 5 of 9. Other.")]),
        classreport.LearnerResult("d", [record("x", "failed", "Wrong at 4 of 7.")]),
        # The bug's words in a check that does not catch it are not a diagnosis.
        classreport.LearnerResult("e", [record("y", "failed", named)]),
        classreport.LearnerResult("f", [record("x", "error", "Not graded.")], note="Not graded."),
        # A later check that lists the usual causes does not add a second bug.
        classreport.LearnerResult("g", [record(bug.caught_by, "failed", named), record(
            untied.caught_by, "failed", f"Training is off. Check the targets, and that {untied.message}.")]),
        # One message with two bugs' phrases: the one it names first.
        classreport.LearnerResult("h", [record(last.caught_by, "failed", both)]),
    ]
    problems = classreport.problems_of_the_class(results, {STAGE: mutants})
    assert [(p.known_bug, p.label, p.learners) for p in problems] == [
        ("counts_transposed", bug.bug, ["a", "b", "g"]),
        ("", "Wrong at 5 of 9.", ["c", "d"]),
        ("generate_first_position", last.bug, ["h"]),
        ("", named, ["e"]),
    ]


def test_without_matplotlib_the_page_has_tables_and_says_why_no_plots(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    results = [classreport.LearnerResult("ada", [record("a", "passed", title="$x$ <b>")])]
    page = classreport.write_report(results, tmp_path / "report.html", "a test")
    text = page.read_text(encoding="utf-8")
    assert "No plots: the plots need matplotlib" in text and "<img" not in text
    assert "$x$ &lt;b&gt;" in text and not (tmp_path / "report").exists()


def test_gradescope_results_of_another_autograder_are_read_as_far_as_they_go(tmp_path):
    (tmp_path / "ada").mkdir()
    (tmp_path / "ada" / "results.json").write_text(json.dumps({"tests": [
        {"name": "adds", "score": 1, "max_score": 1},
        {"name": "scales", "score": 0, "max_score": 2, "output": "scale([1], 2) should be [2]. It was [1]."},
        {"name": "needs a GPU", "score": 0, "max_score": 0},
    ]}))
    results, unread = classreport.read_folder(tmp_path)
    assert unread == [] and [r.learner for r in results] == ["ada"]
    (ada,) = results
    assert [(r.title, r.status) for r in ada.records] == [("adds", "passed"), ("scales", "failed"), ("needs a GPU", "skipped")]
    assert ada.score == (1, 3) and ada.graded
    (problem,) = classreport.problems_of_the_class(results, {})
    assert problem.label == "scale([1], 2) should be [2]." and problem.learners == ["ada"]


def test_an_nbgrader_course_folder_gets_a_clear_answer(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text("")
    with pytest.raises(CourseError, match="is an nbgrader course folder: autograde keeps"):
        classreport.read_folder(tmp_path)
