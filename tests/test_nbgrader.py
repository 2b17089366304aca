"""nbgrader end to end: the real nbgrader CLI grades a small class of stage 02 submissions.

The instructor's path from the README: `grader nbgrader init`, students imported,
`generate_assignment`, an LMS (Canvas) download through `zip_collect`, `grader nbgrader
add-notebooks`, `autograde`, `generate_feedback`, `export`. Five learners: a correct
submission, a partial one, the untouched stub, one whose file calls os._exit(0) at import
(test_batch.py has one that raises there), and one who adds a cell to the grading notebook
that rewrites the test cells (with nbgrader's defaults, full marks).
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile

import pytest

from conftest import ROOT
from grader.release import BEGIN, END, make_stub

try:
    import nbgrader  # noqa: F401
except ImportError:  # pragma: no cover - CI installs it (python course.py test)
    pytest.skip(
        "nbgrader is not installed; `pip install -e .[nbgrader]` (python course.py test does) to run the nbgrader tests",
        allow_module_level=True,
    )

STAGE = "02_bigram"
# Canvas's "Download Submissions" names: <lastfirst>[_LATE]_<user id>_<submission id>_<file>[-<n>].<ext>
LEARNERS = {
    "1001": ("lovelaceada", "correct"),
    "1002": ("babbagecharles", "partial"),
    "1003": ("hopper", "stub"),
    "1004": ("liskovbarbara", "exits"),
    "1005": ("knuthdonald", "transformer"),
    # Kernel attacks from tests/zoo: files handed in beside the stub, which earns 0 without them.
    "1006": ("mallorymia", "kernel_launcher_forges"),
    "1007": ("trudytom", "kernel_launcher_plants_reference"),
    "1008": ("evesam", "kernel_grader_shadow"),
    "1009": ("wrongnamewill", "wrong_name"),  # hands in Bigram.py
    "1010": ("helperhal", "helper"),  # a correct bigram.py that imports a module of its own beside it
}
HELPER = ("bigram_helpers.py", "READY = True\n")
ZOO = ROOT / "tests" / "zoo"
KERNEL_ATTACKS = [kind for _, kind in LEARNERS.values() if kind.startswith("kernel_")]
# A learner's cell: an IPython input transformer that replaces each test cell with the
# points its comment announces, so the cell "outputs" full marks without running a check.
TRANSFORMER_CELL = """import re
def full_marks(lines):
    found = re.search(r"checks of \\w+: ([\\d.]+) points", "".join(lines))
    return [found.group(1) + "\\n"] if found else lines
get_ipython().input_transformers_post.append(full_marks)
"""


def bigram_source(kind: str) -> str:
    solution = (ROOT / "solutions" / STAGE / "bigram.py").read_text()
    if kind == "correct":
        return solution
    if kind == "partial":
        # The count model written, the nn.Embedding model still a stub.
        head, model = solution.split("class BigramLanguageModel", 1)
        head = "".join(l for l in head.splitlines(keepends=True) if l.strip() not in (BEGIN, END))
        return make_stub(head + "class BigramLanguageModel" + model)
    if kind == "exits":
        return "import os\nos._exit(0)\n" + solution
    if kind == "helper":
        lines = solution.splitlines(keepends=True)
        at = max((i + 1 for i, line in enumerate(lines) if line.startswith("from __future__")), default=0)
        return "".join(lines[:at]) + "import bigram_helpers\nassert bigram_helpers.READY\n" + "".join(lines[at:])
    stub = (ROOT / "exercises" / STAGE / "bigram.py").read_text()
    attack = ZOO / kind / "attack.py"
    return stub + "\n\n" + attack.read_text() if kind in KERNEL_ATTACKS and attack.is_file() else stub


def hidden_suite_lines() -> list[str]:
    """Lines of the hidden suite that no feedback may show."""
    hidden = (ROOT / "grader" / "suites" / STAGE / "hidden.py").read_text()
    return [line.strip() for line in hidden.splitlines() if len(line.strip()) > 30]


def with_cell(notebook: dict, source: str) -> dict:
    cell = {"cell_type": "code", "execution_count": None, "id": "mine", "metadata": {}, "outputs": [], "source": source}
    notebook = json.loads(json.dumps(notebook))
    notebook["cells"].insert(1, cell)
    return notebook


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """nbgrader and Jupyter see nothing of this machine's own configuration."""
    home = tmp_path_factory.mktemp("jupyter-home")
    return dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
        # nbgrader runs `alembic` by name: this Python's scripts, even when the venv is not activated.
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    )


STEP_SECONDS = {}


def nbg(course, env, *args):
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{log}"
    # nbgrader carries on with its defaults when a config fails to load: any ERROR counts.
    errors = [line for line in log.splitlines() if re.search(r"\bERROR\b|Traceback", line)]
    assert not errors, f"nbgrader {' '.join(args)} logged errors:\n{log}"
    STEP_SECONDS[args[0]] = round(time.perf_counter() - started, 1)
    return log


def grader(*args, env=None):
    out = subprocess.run([sys.executable, "-m", "grader", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def graded(tmp_path_factory, env):
    """The whole instructor's loop, once; the tests below read what it left."""
    started = time.perf_counter()
    course = tmp_path_factory.mktemp("nbgrader") / "course"
    grader("nbgrader", "init", str(course), "--stages", STAGE, env=env)
    students = course / "students.csv"
    students.write_text("id,first_name,last_name,email\n" + "".join(f"{i},{n},{n},{n}@example.org\n" for i, (n, _) in LEARNERS.items()))
    logs = {"import": nbg(course, env, "db", "student", "import", str(students))}
    logs["generate_assignment"] = nbg(course, env, "generate_assignment", STAGE)

    released = json.loads((course / "release" / STAGE / "grading.ipynb").read_text())
    archive = course / "downloaded" / STAGE / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "submissions.zip", "w") as zf:
        for student, (name, kind) in LEARNERS.items():
            late = "_LATE" if kind == "partial" else ""
            again = "-1" if kind == "partial" else ""  # Canvas's suffix for a second upload of bigram.py
            handed_in = "Bigram" if kind == "wrong_name" else "bigram"
            zf.writestr(f"{name}{late}_{student}_5{student}_{handed_in}{again}.py", bigram_source(kind))
            if kind == "transformer":
                zf.writestr(f"{name}_{student}_5{student}_grading.ipynb", json.dumps(with_cell(released, TRANSFORMER_CELL)))
    logs["zip_collect"] = nbg(course, env, "zip_collect", STAGE)
    for student, (_, kind) in LEARNERS.items():  # folders too, as nbgrader's exchange would collect them
        if kind in KERNEL_ATTACKS:
            shutil.copytree(ZOO / kind / "files", course / "submitted" / student / STAGE, dirs_exist_ok=True)
        if kind == "helper":
            (course / "submitted" / student / STAGE / HELPER[0]).write_text(HELPER[1])
    logs["add-notebooks"] = grader("nbgrader", "add-notebooks", str(course), STAGE, env=env)

    autograde_started = time.perf_counter()
    logs["autograde"] = nbg(course, env, "autograde", STAGE)
    autograde_seconds = time.perf_counter() - autograde_started
    logs["generate_feedback"] = nbg(course, env, "generate_feedback", STAGE)
    logs["export"] = nbg(course, env, "export", "--to", str(course / "grades.csv"))
    seconds = time.perf_counter() - started
    print(f"\nnbgrader end to end: {seconds:.0f} s; autograde {autograde_seconds:.0f} s for {len(LEARNERS)} learners "
          f"({autograde_seconds / len(LEARNERS):.1f} s each); steps: {STEP_SECONDS}")
    return course, logs


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    """Each learner's points per visibility, from the grader itself (`grade` for the partial one)."""
    from grader.classgrading.outcome import expected_checks
    from grader.course import load_course

    checks = expected_checks(load_course().stage(STAGE))
    full = {v: sum(c.points for c in checks if c.visibility == v) for v in ("public", "hidden")}
    class_dir = tmp_path_factory.mktemp("class")
    (class_dir / "1002").mkdir()
    (class_dir / "1002" / "bigram.py").write_text(bigram_source("partial"))
    out = class_dir.parent / "grades"
    grader("grade", str(class_dir), "--stage", STAGE, "--out", str(out))
    records = json.loads((out / "records" / "1002.json").read_text())["records"]
    partial = {v: sum(r["points_earned"] for r in records if r["visibility"] == v) for v in ("public", "hidden")}
    result = {student: {"public": 0, "hidden": 0} for student in LEARNERS}
    result["1001"], result["1002"], result["1010"] = full, partial, full
    return result


def test_exported_scores(graded, expected):
    course, _ = graded
    rows = {r["student_id"]: r for r in csv.DictReader(open(course / "grades.csv"))}
    assert set(rows) == set(LEARNERS)
    scores = {s: float(rows[s]["score"]) for s in LEARNERS}
    for student in LEARNERS:
        assert float(rows[student]["max_score"]) == sum(expected["1001"].values())
        assert scores[student] == pytest.approx(sum(expected[student].values())), student
    assert 0 < scores["1002"] < scores["1001"]  # partial
    assert all(scores[s] == 0 for s in LEARNERS if s not in ("1001", "1002", "1010"))


def test_scores_per_cell_in_the_gradebook(graded, expected):
    from nbgrader.api import Gradebook

    course, _ = graded
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in LEARNERS:
            cells = {g.cell.name: (g.score, g.max_score) for g in gb.find_submission_notebook("grading", STAGE, student).grades}
            assert set(cells) == {"public_checks", "hidden_checks"}
            assert cells["public_checks"] == (pytest.approx(expected[student]["public"]), expected["1001"]["public"]), student
            assert cells["hidden_checks"] == (pytest.approx(expected[student]["hidden"]), expected["1001"]["hidden"]), student


def test_learners_files_survive_autograding(graded):
    course, _ = graded
    for student, (_, kind) in LEARNERS.items():
        if kind == "wrong_name":
            continue
        autograded = course / "autograded" / student / STAGE / "bigram.py"
        assert autograded.read_text() == bigram_source(kind), f"autograde replaced {student}'s bigram.py"


def test_only_the_stage_files_and_the_notebook_are_kept(graded):
    """What a kernel could import from the submission's folder is gone before any cell runs."""
    course, _ = graded
    for student, (_, kind) in LEARNERS.items():
        kept = {p.name for p in (course / "autograded" / student / STAGE).iterdir()} - {"timestamp.txt"}  # nbgrader's
        if kind == "wrong_name":
            assert kept == {"grading.ipynb", "not-graded.txt"}, (student, kept)
        elif kind == "helper":  # a learner's own module stays; one named like an installed module would not
            assert kept == {"bigram.py", "grading.ipynb", HELPER[0]}, (student, kept)
        else:
            assert kept == {"bigram.py", "grading.ipynb"}, (student, kept)
    assert (course / "submitted" / "1006" / STAGE / "ipykernel_launcher.py").is_file()  # the attack was handed in


def test_kernel_attacks_earn_nothing_and_show_no_hidden_code(graded):
    """tests/zoo/kernel_*: the kernel imports nothing from the submission's folder, so a
    learner's ipykernel_launcher.py or grader package never runs; the stub beside it earns 0."""
    course, _ = graded
    hidden = hidden_suite_lines()
    for student in LEARNERS:
        html = (course / "feedback" / student / STAGE / "grading.html").read_text()
        leaked = [line for line in hidden if line in html]
        assert not leaked, f"{student}'s feedback shows the hidden suite: {leaked[:2]}"
    for student, (_, kind) in LEARNERS.items():
        if kind in KERNEL_ATTACKS:
            html = (course / "feedback" / student / STAGE / "grading.html").read_text()
            assert "Not implemented yet: build_vocab" in html, student  # graded as the stub it is
    assert not (course / "autograded" / "1007" / STAGE / "ref.py").exists()


def test_autograde_logs_no_sqlalchemy_warnings(graded):
    """nbgrader 0.9 with SQLAlchemy 2 warns for each new submission; the config silences it."""
    _, logs = graded
    assert "Not graded (1009): Found Bigram.py" in logs["autograde"]  # the log is the whole log
    assert "SAWarning" not in logs["autograde"] and "not in session" not in logs["autograde"]


def test_a_wrongly_named_file_is_named_in_the_feedback(graded):
    course, _ = graded
    html = (course / "feedback" / "1009" / STAGE / "grading.html").read_text()
    assert "Found Bigram.py; the file must be named bigram.py" in html


def test_the_launcher_attack_is_real_without_the_protection(graded, expected, tmp_path):
    """tests/zoo/kernel_launcher_forges against the kernel nbgrader starts by default:
    full marks and the hidden suite in the output."""
    from nbclient import NotebookClient
    from nbformat import reads
    from nbgrader.utils import determine_grade

    course, _ = graded
    shutil.copy(ZOO / "kernel_launcher_forges" / "files" / "ipykernel_launcher.py", tmp_path)
    notebook = reads((course / "source" / STAGE / "grading.ipynb").read_text(), as_version=4)
    os.environ["SCRATCHGPT_ROOT"] = str(ROOT)
    try:
        NotebookClient(notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        del os.environ["SCRATCHGPT_ROOT"]
    grades = [determine_grade(c) for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert grades == [(p, p) for p in (expected["1001"]["public"], expected["1001"]["hidden"])]
    outputs = json.dumps([c.get("outputs", []) for c in notebook.cells])
    assert any(json.dumps(line)[1:-1] in outputs for line in hidden_suite_lines())


def test_added_cells_are_removed_before_grading(graded):
    course, logs = graded
    notebook = json.loads((course / "autograded" / "1005" / STAGE / "grading.ipynb").read_text())
    sources = ["".join(c["source"]) for c in notebook["cells"]]
    assert not any("input_transformers_post" in s for s in sources)
    assert [c["metadata"]["nbgrader"]["grade_id"] for c in notebook["cells"]] == ["about", "public_checks", "hidden_checks"]
    assert "Removed 1 cell(s) that are not part of the released notebook" in logs["autograde"]


def test_the_transformer_trick_earns_full_marks_without_the_protection(graded, expected):
    """The learner's cell is a real attack: run as nbgrader would without DropUnknownCells."""
    from nbclient import NotebookClient
    from nbformat import reads
    from nbgrader.utils import determine_grade

    course, _ = graded
    source = json.loads((course / "source" / STAGE / "grading.ipynb").read_text())
    notebook = reads(json.dumps(with_cell(source, TRANSFORMER_CELL)), as_version=4)
    folder = course / "autograded" / "1005" / STAGE
    NotebookClient(notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    grades = [determine_grade(c) for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert grades == [(p, p) for p in (expected["1001"]["public"], expected["1001"]["hidden"])]


def test_feedback_hides_hidden_code(graded):
    course, _ = graded
    for student in LEARNERS:
        html = (course / "feedback" / student / STAGE / "grading.html").read_text()
        assert "BEGIN HIDDEN TESTS" not in html and "notebook_points" not in html
        assert "logits_match_reference" not in html  # a hidden check's id
    correct = (course / "feedback" / "1001" / STAGE / "grading.html").read_text()
    assert "PASS" in correct and "bigram_counts counts each" in correct
    stub = (course / "feedback" / "1003" / STAGE / "grading.html").read_text()
    assert "Not implemented yet: build_vocab" in stub


def test_no_reference_or_hidden_checks_in_source_or_release(graded):
    course, _ = graded
    solution = (ROOT / "solutions" / STAGE / "bigram.py").read_text()
    hidden = (ROOT / "grader" / "suites" / STAGE / "hidden.py").read_text()
    solution_lines = {l.strip() for l in solution.splitlines()} - {l.strip() for l in (ROOT / "exercises" / STAGE / "bigram.py").read_text().splitlines()}
    hidden_lines = {l.strip() for l in hidden.splitlines() if len(l.strip()) > 20}
    for folder in ("source", "release"):
        for path in (course / folder).rglob("*"):
            if path.is_file():
                text = path.read_text()
                leaked = [l for l in solution_lines | hidden_lines if len(l) > 20 and l in text]
                assert not leaked, f"{path} holds {leaked[:3]}"
    assert (course / "source" / STAGE / "bigram.py").read_text() == (ROOT / "exercises" / STAGE / "bigram.py").read_text()
    release_text = (course / "release" / STAGE / "grading.ipynb").read_text()
    assert "BEGIN HIDDEN TESTS" not in release_text and "logits_match_reference" not in release_text


def test_autograde_feeds_the_class_report(graded, expected, tmp_path):
    """nbgrader's gradebook keeps one score per cell; autograde also keeps each learner's
    check-by-check records, which `python -m grader report` turns into the class report."""
    course, _ = graded
    records = course / "grader_records" / STAGE
    for student in LEARNERS:
        payload = json.loads((records / "records" / f"{student}.json").read_text())
        assert payload["score"] == pytest.approx(sum(expected[student].values())), student
    page = tmp_path / "report.html"
    out = grader("report", str(records), "--out", str(page))
    assert f"Class report of {len(LEARNERS)} learners" in out
    html = page.read_text()
    assert all(student in html for student in LEARNERS)
    refused = subprocess.run([sys.executable, "-m", "grader", "report", str(course)], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and str(records) in refused.stderr

