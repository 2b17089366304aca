"""Batch grading with nbgrader (0.9): the course directory, its config, the grading notebook.

    python -m grader nbgrader init COURSE_DIR [--stages 02_bigram ...]
    python -m grader nbgrader add-notebooks COURSE_DIR STAGE

Learners write `.py` files, not notebooks. Each stage's assignment therefore holds the
stage's stubs and one grading notebook, `grading.ipynb`, whose cells are all locked. Each
of its autograder-test cells stands for a group of checks (the public ones, the hidden
ones) and is worth that group's points. The hidden part of each cell (nbgrader's
"### BEGIN HIDDEN TESTS" region, removed from the release) calls `notebook_points`, which
grades the learner's `.py` files with the course's grader in a child process, once per
submission, and leaves the points the group earned as the cell's last expression: that is
nbgrader's partial credit. Learner code never runs inside the notebook's kernel, so it
cannot reach the kernel's state, IPython's hooks or the other cells.

What the config takes care of, with the nbgrader 0.9 behaviour it relies on:
- `Autograde.exclude_overwriting`: autograde copies every non-notebook file of source/
  over the submission unless it is listed there; the learners' `.py` files must survive.
- `Autograde.sanitize_preprocessors`: after `OverwriteCells` has restored the locked
  cells (and removed the grade_id of any cell the gradebook does not know, while
  `DeduplicateIds` has removed repeated ones), `DropUnknownCells` removes every cell
  without a grade_id. A cell a learner adds could otherwise run before the tests, for
  instance registering an IPython input transformer that rewrites them: with nbgrader's
  defaults such a notebook earns full marks.
- `GenerateFeedback.preprocessors` adds `ClearHiddenTests`: nbgrader's feedback shows the
  autograded notebook, hidden test regions included, unless told otherwise.
- `FileNameCollectorPlugin.valid_ext` lets `zip_collect` take `.py` files (only
  `.ipynb` by default), and `named_regexp` reads an LMS's file names.
- `Execute.timeout`: nbgrader's default of 30 s per cell is shorter than a stage's
  time limit.
- The kernel runs nothing of the learner's. Autograde starts it in the submission's
  folder, and `python -m ipykernel_launcher` would import a learner's
  `ipykernel_launcher.py` (or, once IPython has put the folder on sys.path, any module it
  imports later) outside the sandbox. So `Execute.kernel_name` names the kernel that `init`
  writes to kernels/scratchgpt-grading/ (found through JUPYTER_PATH): `python -I` (no
  script folder, no PYTHON* variables, no user site) with IPython's `--ignore-cwd`.
- `KeepOnlyTheStage`, the first sanitize preprocessor, leaves in the autograded folder the
  notebook and the stage's files as the grader's intake takes them from the submitted
  folder (grader/intake.py: no link followed, odd files refused), nothing else. A refused
  submission leaves the reason in REFUSED_NOTE, which `notebook_points` reports.
- The config sets SCRATCHGPT_ROOT and SCRATCHGPT_PYTHON for the kernel as its very last
  step. nbgrader keeps going with its defaults when a config file fails to load; then
  those are unset and every test cell fails (0 points, and it says why) instead of
  grading without the protections above.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from ..course import Course, CourseError, Stage, load_course

NOTEBOOK = "grading.ipynb"
KERNEL_NAME = "scratchgpt-grading"
REFUSED_NOTE = "not-graded.txt"  # written by KeepOnlyTheStage into the autograded folder only
NBGRADER_TIMESTAMP = "timestamp.txt"  # nbgrader's own record of when a submission came in
ROOT_VARIABLE, PYTHON_VARIABLE = "SCRATCHGPT_ROOT", "SCRATCHGPT_PYTHON"
KERNEL_MARGIN = 60  # seconds the notebook cell waits beyond the grader's own hard limit
# Canvas names each file of a "Download Submissions" zip
#   <lastfirst>[_LATE]_<user id>_<submission id>_<original name>[-<n>].<ext>
# (-<n> when a learner handed in a file of that name more than once). zip_collect matches
# the full path, hence the leading `.*`.
CANVAS_REGEXP = r".*/[^/_]+_(?:LATE_)?(?P<student_id>\d+)_\d+_(?P<file_id>[^/]+?)(?:-\d+)?\.(?:py|ipynb)$"


# --- the course directory --------------------------------------------------------------

def init_course(course: Course, course_dir: Path, stages: list[Stage], python: str | None = None) -> list[Path]:
    """Write nbgrader_config.py and source/<stage>/ for each stage; returns what it wrote."""
    from .batch import expected_checks

    course_dir = course_dir.expanduser().resolve()
    if course_dir == course.root or course.root in course_dir.parents:
        raise CourseError("Make the nbgrader course directory outside the course repository (it will hold learners' work).")
    written = []
    for stage in stages:
        exercise = course.root / "exercises" / stage.id
        missing = [f for f in stage.files if not (exercise / f).is_file()]
        if missing:
            raise CourseError(f"{exercise} lacks {', '.join(missing)}; run `python -m grader release --write-exercises`.")
        source = course_dir / "source" / stage.id
        source.mkdir(parents=True, exist_ok=True)
        # Only the stubs and the handout: never the reference, never a suite.
        for name in [*stage.files, "README.md"]:
            if (exercise / name).is_file():
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(exercise / name, source / name)
                written.append(source / name)
        notebook = source / NOTEBOOK
        notebook.write_text(json.dumps(grading_notebook(stage, expected_checks(stage)), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(notebook)
    kernel = course_dir / "kernels" / KERNEL_NAME / "kernel.json"
    kernel.parent.mkdir(parents=True, exist_ok=True)
    kernel.write_text(json.dumps(kernel_spec(python or sys.executable), indent=1) + "\n", encoding="utf-8")
    written.append(kernel)
    config = course_dir / "nbgrader_config.py"
    known = _configured_stages(config)
    all_stages = {s.id: s for s in course.stages}
    configured = [all_stages[s] for s in known if s in all_stages and all_stages[s] not in stages] + list(stages)
    config.write_text(config_text(course, configured, python or sys.executable), encoding="utf-8")
    written.append(config)
    return written


def kernel_spec(python: str) -> dict:
    """The grading notebook's kernel: it imports nothing from the folder it starts in."""
    return {
        "argv": [python, "-I", "-m", "ipykernel_launcher", "--ignore-cwd", "-f", "{connection_file}"],
        "display_name": "ScratchGPT grading (imports nothing from the submission)",
        "language": "python",
        "metadata": {"debugger": False},
    }


def _configured_stages(config: Path) -> list[str]:
    """The stages an earlier `init` configured, so that adding one keeps the others."""
    if not config.is_file():
        return []
    for line in config.read_text(encoding="utf-8").splitlines():
        if line.startswith("STAGE_FILES = "):
            try:
                return list(json.loads(line.split("=", 1)[1]))
            except ValueError:
                return []
    return []


def config_text(course: Course, stages: list[Stage], python: str) -> str:
    from .batch import hard_timeout

    files = {s.id: list(s.files) for s in stages}
    timeout = int(max(hard_timeout(s) for s in stages) + KERNEL_MARGIN)
    return CONFIG_TEMPLATE.format(
        root=json.dumps(str(course.root)),
        python=json.dumps(python),
        stage_files=json.dumps(files),
        timeout=timeout,
        canvas=CANVAS_REGEXP,
        root_var=ROOT_VARIABLE,
        python_var=PYTHON_VARIABLE,
        kernel=KERNEL_NAME,
    )


CONFIG_TEMPLATE = '''\
# nbgrader configuration for ScratchGPT, written by `python -m grader nbgrader init`.
# Self-contained: it needs nbgrader and this file, nothing from ~/.jupyter. Run every
# nbgrader command from this folder. Regenerate it with `init` rather than editing it,
# except for the LMS file-name pattern below.
import os
import sys
import warnings

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearOutput,
    DeduplicateIds,
    GetGrades,
    NbGraderPreprocessor,
    OverwriteCells,
    OverwriteKernelspec,
)

SCRATCHGPT_ROOT = {root}
SCRATCHGPT_PYTHON = {python}
STAGE_FILES = {stage_files}

if not os.path.isfile(os.path.join(SCRATCHGPT_ROOT, "course.toml")):
    raise RuntimeError(
        f"The ScratchGPT course is not at {{SCRATCHGPT_ROOT}} any more; "
        "run `python -m grader nbgrader init` again from the course."
    )


class KeepOnlyTheStage(NbGraderPreprocessor):
    """Before any cell runs, the autograded folder holds the notebooks and the stage's files,
    taken by the grader's intake from the submitted folder (grader/intake.py), nothing else:
    no link is followed, a learner's other files are not there for the kernel to import,
    and a submission that intake refuses is graded 0 with the reason."""

    def preprocess(self, nb, resources):
        if SCRATCHGPT_ROOT not in sys.path:
            sys.path.insert(0, SCRATCHGPT_ROOT)
        from grader.classgrading.nbgrader_course import keep_only_the_stage

        info = resources["nbgrader"]
        autograded = os.path.join(os.path.dirname(os.path.abspath(__file__)), "autograded", info["student"], info["assignment"])
        refused = keep_only_the_stage(info["assignment"], resources["metadata"]["path"], autograded)
        if refused:
            self.log.warning("Not graded (%s): %s", info["student"], refused)
        return nb, resources


class DropUnknownCells(NbGraderPreprocessor):
    """Remove every cell the released notebook does not have.

    Runs after OverwriteCells, which has restored each known cell from the gradebook and
    taken the grade_id off any cell the gradebook does not know (DeduplicateIds has done
    the same for repeated ids). A cell without a grade_id is one the learner added: it
    could otherwise run code before the tests and change their results.
    """

    def preprocess(self, nb, resources):
        kept = [cell for cell in nb.cells if cell.metadata.get("nbgrader", {{}}).get("grade_id")]
        if len(kept) != len(nb.cells):
            self.log.warning(
                "Removed %d cell(s) that are not part of the released notebook; they do not run and cannot change the score.",
                len(nb.cells) - len(kept),
            )
        nb.cells = kept
        return nb, resources


# nbgrader 0.9 with SQLAlchemy 2 warns "Object of type <SubmittedAssignment> not in session,
# add operation along ... will not proceed" for each new submission. It is harmless (the
# submission and its grades are saved all the same) and would bury the warnings that matter.
warnings.filterwarnings("ignore", message=r"Object of type <\w+> not in session, add operation along")

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".hypothesis", ".pytest_cache"]

# Learners hand in .py files: autograde must keep them, not copy the stubs over them.
c.Autograde.exclude_overwriting = STAGE_FILES
c.Autograde.sanitize_preprocessors = [
    KeepOnlyTheStage,
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    OverwriteCells,
    DropUnknownCells,
    CheckCellMetadata,
]
# A cell runs the stage's whole suite, so it needs the stage's time limit and more.
c.Execute.timeout = {timeout}
# The kernel `init` wrote to kernels/: `python -I ... --ignore-cwd` imports nothing from the
# submission's folder (a learner's ipykernel_launcher.py would otherwise run unsandboxed).
c.Execute.kernel_name = "{kernel}"
os.environ["JUPYTER_PATH"] = os.pathsep.join(
    p for p in [os.path.dirname(os.path.abspath(__file__)), os.environ.get("JUPYTER_PATH", "")] if p
)

# Feedback shows the test cells without their hidden part.
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]

# zip_collect: take .py files too, and read the learner's id from the LMS's file names.
# This pattern reads Canvas's "Download Submissions" names
# (<lastfirst>[_LATE]_<user id>_<submission id>_<file>[-<n>].py); change it for another LMS.
c.FileNameCollectorPlugin.valid_ext = [".py", ".ipynb"]
c.FileNameCollectorPlugin.named_regexp = r"{canvas}"

# Last, so that they are set only when everything above loaded (see grader/classgrading/nbgrader_course.py).
os.environ["{root_var}"] = SCRATCHGPT_ROOT
os.environ["{python_var}"] = SCRATCHGPT_PYTHON
'''


# --- the grading notebook --------------------------------------------------------------

def check_groups(expected) -> list[tuple[str, str, list]]:
    """(grade_id, heading, checks): the public checks, then the hidden ones."""
    groups = []
    for visibility, grade_id, heading in (("public", "public_checks", "Public checks"), ("hidden", "hidden_checks", "Hidden checks")):
        checks = [c for c in expected if c.visibility == visibility]
        if checks:
            groups.append((grade_id, heading, checks))
    return groups


def _cell_metadata(grade_id: str, points: float | None = None) -> dict:
    nbgrader = {"grade": points is not None, "grade_id": grade_id, "locked": True, "schema_version": 3, "solution": False, "task": False}
    if points is not None:
        nbgrader["points"] = points
    return {"deletable": False, "editable": False, "nbgrader": nbgrader}


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines:
        lines[-1] = lines[-1].rstrip("\n")
    return lines


def grading_notebook(stage: Stage, expected) -> dict:
    files = ", ".join(f"`{f}`" for f in stage.files)
    intro = (
        f"# {stage.id}: {stage.title}\n\n"
        f"This notebook grades your code; you do not need to edit or run it. Write your code in {files}, "
        f"in this folder, and check it as you go with `python -m grader check {stage.id}`.\n\n"
        "When your instructor grades the class, each cell below runs the stage's checks on your `.py` files: "
        "the public ones you can run yourself, and hidden ones. Every cell is locked, and cells added to this "
        "notebook are removed before grading, so the score depends on your `.py` files alone."
    )
    cells = [{"cell_type": "markdown", "id": "about", "metadata": _cell_metadata("about"), "source": _lines(intro)}]
    for grade_id, heading, checks in check_groups(expected):
        points = sum(c.points for c in checks)
        visible = [f"# {heading} of {stage.id}: {points:g} points."]
        if checks[0].visibility == "public":
            visible += [f"#   {c.points:g} pt  {c.title}" for c in checks]
            visible.append(f"# Run them yourself with `python -m grader check {stage.id}`.")
        else:
            visible.append("# They run when your instructor grades the stage, on your .py files.")
        ids = ", ".join(json.dumps(c.check_id) for c in checks)
        hidden = [
            "### BEGIN HIDDEN TESTS",
            "import os as _os, sys as _sys",
            f'_root = _os.environ.get("{ROOT_VARIABLE}")',
            f'assert _root, "{ROOT_VARIABLE} is not set: autograde from the course directory, whose nbgrader_config.py sets it."',
            "# Import the course's grader, never a file of the same name from the submission folder.",
            '_sys.path[:] = [_root] + [_p for _p in _sys.path if _p not in ("", ".", _os.getcwd())]',
            "from grader.classgrading.nbgrader_course import notebook_points",
            f"notebook_points({json.dumps(stage.id)}, [{ids}], {points:g})",
            "### END HIDDEN TESTS",
        ]
        cells.append({
            "cell_type": "code",
            "execution_count": None,
            "id": grade_id,
            "metadata": _cell_metadata(grade_id, points),
            "outputs": [],
            "source": _lines("\n".join(visible + hidden)),
        })
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


# --- inside the notebook's kernel ------------------------------------------------------

_outcomes: dict = {}


REPORT_RECORDS = "grader_records"  # <course>/grader_records/<stage>/records/<student>.json


def _keep_for_the_class_report(folder: Path, stage: Stage, outcome) -> None:
    """The learner's records, as `grade` writes them, for `python -m grader report
    <course>/grader_records/<stage>`: nbgrader's gradebook keeps only one score per cell."""
    from .exporters import write_learner

    step = folder.parent.parent  # nbgrader's layout: <course>/autograded/<student>/<stage>
    if step.name != "autograded":
        return
    try:
        write_learner(step.parent / REPORT_RECORDS / stage.id, outcome, stage)
    except OSError as exc:  # standard output only: a cell that writes to stderr scores 0
        print(f"(The class report's copy of these results could not be written: {exc.strerror}.)")


def notebook_points(stage_id: str, check_ids: list[str], points: float) -> float:
    """Grade the submission in the current folder (once), print this group's checks, return its points.

    Runs in the kernel nbgrader starts for the grading notebook. Writes only to standard
    output: nbgrader gives 0 points to a cell that writes to standard error.
    """
    course = load_course()
    stage = course.stage(stage_id)
    folder = Path.cwd()
    refused = os.path.isfile(REFUSED_NOTE) and not os.path.islink(REFUSED_NOTE)  # KeepOnlyTheStage refused it
    key = (stage_id, str(folder))
    if key not in _outcomes:
        from .batch import grade_submission
        from .outcome import Outcome, error_records, expected_checks

        if refused:
            note = Path(REFUSED_NOTE).read_text(encoding="utf-8", errors="replace").strip()
            _outcomes[key] = Outcome(folder.parent.name, error_records(stage, expected_checks(stage), note), note)
        else:
            python = os.environ.get(PYTHON_VARIABLE) or sys.executable
            _outcomes[key] = grade_submission(course, stage, folder, python=python, learner=folder.parent.name)
        _keep_for_the_class_report(folder, stage, _outcomes[key])
    outcome = _outcomes[key]
    if refused:
        print(outcome.note)
        return 0
    if outcome.note:
        print(outcome.note)
        return 0
    by_id = {r.check_id: r for r in outcome.records}
    unknown = [i for i in check_ids if i not in by_id]
    if unknown:
        raise RuntimeError(
            f"The suite of {stage_id} has changed since this notebook was made (no check {', '.join(unknown)}). "
            "Run `python -m grader nbgrader init` and `nbgrader generate_assignment` again."
        )
    group = [by_id[i] for i in check_ids]
    counted = [r for r in group if r.counts]
    earned = sum(r.points_earned for r in counted)
    possible = sum(r.points_possible for r in counted)
    for r in group:
        mark = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}[r.status]
        worth = "not counted" if not r.counts else f"{r.points_earned:g}/{r.points_possible:g}"
        print(f"{mark:<5} {r.title}  ({worth})")
        if r.status != "passed" and r.message:
            for line in r.message.splitlines()[:12]:
                print(f"        {line}")
    if possible == 0:
        print("None of these checks could run here, so they earn nothing; grade on a machine that can run them.")
        return 0
    if possible != points:
        # Skipped checks (no GPU here) are neither earned nor lost: scale to the cell's points.
        print(f"{earned:g} of the {possible:g} points that could be checked here, scaled to this cell's {points:g}.")
        earned = earned * points / possible
    return round(min(max(earned, 0), points), 4)


# --- after collecting ------------------------------------------------------------------

def keep_only_the_stage(stage_id: str, submitted: str, autograded: str) -> str:
    """Make `autograded` hold its notebooks and the stage's files as intake takes them from
    `submitted`, nothing else; returns intake's refusal ("" when the files were taken),
    which is also left in REFUSED_NOTE for the notebook's cells to report.

    Called by the nbgrader config's KeepOnlyTheStage, in nbgrader's process, after autograde
    has copied the submission (following links, as nbgrader does) and before any cell runs.
    """
    from .. import intake

    stage = load_course().stage(stage_id)
    target = Path(autograded)
    for entry in os.scandir(target):
        kept = entry.name.endswith(".ipynb") or entry.name == NBGRADER_TIMESTAMP
        if kept and entry.is_file(follow_symlinks=False):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    try:
        taken = intake.take(Path(submitted), stage)
        intake.copy(dataclasses.replace(taken, files=learner_modules(taken, stage)), target, mode=0o644)
    except intake.Refused as exc:
        (target / REFUSED_NOTE).write_text(f"Not graded: {exc}\n", encoding="utf-8")
        return str(exc)
    return ""


def learner_modules(taken, stage: Stage) -> tuple[str, ...]:
    """The stage's files and the helper modules a learner wrote beside them (`utils.py`),
    which grading imports in its sandbox as in every other mode. A file named like a module
    that is installed here (`ipykernel_launcher.py`, `torch.py`) is left out: it could only
    be there to stand in for that module."""
    import importlib.util

    helpers = []
    for name in taken.files:
        stem = name[:-3]
        if "/" in name or not name.endswith(".py") or name in stage.files or not stem.isidentifier():
            continue
        try:
            installed = importlib.util.find_spec(stem) is not None
        except (ImportError, ValueError):
            installed = True
        if not installed:
            helpers.append(name)
    return (*stage.files, *helpers)


def add_notebooks(course_dir: Path, stage: Stage) -> dict[str, list[str]]:
    """Give each collected submission of `stage` the grading notebook it lacks.

    Learners hand in `.py` files; nbgrader grades notebooks and skips a submission that
    has none. Every cell of the grading notebook is locked and added cells are dropped, so
    the released notebook grades a submission exactly as the learner's own copy would.
    """
    course_dir = course_dir.expanduser().resolve()
    released = course_dir / "release" / stage.id / NOTEBOOK
    if not released.is_file():
        raise CourseError(f"{released} is missing: run `nbgrader generate_assignment {stage.id}` in {course_dir} first.")
    submitted = course_dir / "submitted"
    report: dict[str, list[str]] = {"added": [], "had_one": [], "refused": []}
    if not submitted.is_dir():
        raise CourseError(f"{submitted} does not exist yet: collect the submissions first (`nbgrader collect` or `nbgrader zip_collect`).")
    from .. import intake

    for learner in sorted(p for p in submitted.iterdir() if p.is_dir() and not p.is_symlink()):
        folder = learner / stage.id
        if folder.is_symlink() or not folder.is_dir():
            continue
        notebook = folder / NOTEBOOK
        if notebook.is_file() and not notebook.is_symlink():
            report["had_one"].append(learner.name)
        else:
            # Not a file of its own (missing, or a link nbgrader would follow): the released one.
            if notebook.is_dir() and not notebook.is_symlink():
                shutil.rmtree(notebook)
            elif notebook.is_symlink() or notebook.exists():
                notebook.unlink()
            shutil.copyfile(released, notebook)
            report["added"].append(learner.name)
        try:
            intake.take(folder, stage, only=stage.files)
        except intake.Refused as exc:
            report["refused"].append(f"{learner.name}: {exc}")
    return report


def command(course: Course, stages: list[Stage], args) -> int:
    """`python -m grader nbgrader init|add-notebooks ...`."""
    if course.is_release:
        raise CourseError("Grading with nbgrader needs the hidden checks and the reference, which a student release does not have.")
    if args.nb_action == "init":
        stages = stages or [s for s in course.stages if s.available]
        written = init_course(course, args.course_dir, stages)
        course_dir = args.course_dir.expanduser().resolve()
        for path in written:
            print(f"wrote {path.relative_to(course_dir)}")
        first = stages[0].id
        print(
            f"\nnbgrader course directory ready: {course_dir}\n"
            f"Next, from that folder: `nbgrader generate_assignment {first}` builds release/{first}/ for learners."
        )
        return 0
    stage = stages[0]
    report = add_notebooks(args.course_dir, stage)
    print(f"{stage.id}: added {NOTEBOOK} to {len(report['added'])} submission(s); {len(report['had_one'])} had their own.")
    if report["refused"]:
        print("These submissions will score 0, each with the reason below, unless the learner hands in again:")
        for line in report["refused"]:
            print(f"  {line}")
    print(f"Next: `nbgrader autograde {stage.id}`.")
    return 0
