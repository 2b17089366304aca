"""Gradescope: the autograder zip of one stage, and what its run_autograder calls.

    python -m grader gradescope 02_bigram --zip gradescope-02_bigram.zip
    python -m grader gradescope 02_bigram --run SUBMISSION --results results.json   (inside Gradescope)
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .exporters import _write_json, gradescope_results
from ..results import isolation_summary

if TYPE_CHECKING:
    from ..course import Stage


# --- Gradescope's autograder zip -------------------------------------------------------
# Gradescope unpacks the zip into /autograder/source, runs setup.sh once to build the
# image, then run_autograder for each submission (in /autograder/submission); the
# results go to /autograder/results/results.json ("Autograder Specifications").

GRADESCOPE_COURSE_DIR = "scratchgpt"
# What pip needs to install the grader, beside the package itself.
AUTOGRADER_TOP_FILES = {"course.py", "course.toml", "pyproject.toml", "README.md"}


def in_autograder(rel: Path, course, stage: "Stage") -> bool:
    """Only what grading `stage` needs: the grader without its mutants, this stage's suites
    (hidden ones included), the references of this stage (the hidden checks compare with
    it) and of the earlier ones it builds on, their stubs, and the datasets. No other
    stage's answers or hidden checks, no project tests."""
    parts = rel.parts
    if "__pycache__" in parts or rel.suffix == ".zip":  # nor an earlier autograder zip lying about
        return False
    if len(parts) == 1:
        return rel.name in AUTOGRADER_TOP_FILES
    stages = {stage.id, *(dep.id for dep in course.dependencies(stage))}
    if parts[0] in ("solutions", "exercises"):
        return parts[1] in stages
    if parts[0] == "grader":
        if parts[1] == "mutants":
            return False
        return parts[1] != "suites" or (len(parts) > 2 and parts[2] == stage.id)
    return parts[0] == "datasets"

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder: Python, torch, the grader.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# bubblewrap sandboxes each submission; where the image forbids it, grading warns and goes on.
apt-get install -y -qq python3 python3-venv python3-pip bubblewrap
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet --disable-pip-version-check "{torch}"
/autograder/venv/bin/pip install --quiet --disable-pip-version-check -e /autograder/source/{course}
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission. It always writes results.json: a submission
# that cannot be graded gets every check at 0 points, with a message that says why.
set -uo pipefail
AUTOGRADER="${{AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{SCRATCHGPT_PYTHON:-$AUTOGRADER/venv/bin/python}}"
mkdir -p "$AUTOGRADER/results"
cd "$AUTOGRADER/source/{course}"
exec "$PYTHON" -m grader gradescope {stage} --run "$AUTOGRADER/submission" --results "$AUTOGRADER/results/results.json"
"""


def torch_pin(course_root: Path) -> str:
    """The torch version course.py installs where none is found."""
    import re

    match = re.search(r'TORCH_PIN\s*=\s*"([^"]+)"', (course_root / "course.py").read_text(encoding="utf-8"))
    return match.group(1) if match else "torch"


def build_gradescope_zip(course, stage: "Stage", zip_path: Path) -> list[str]:
    """The autograder zip for one stage; returns the names it holds."""
    import zipfile

    from ..release import _tracked_files

    zip_path = zip_path.resolve()
    files = [rel for rel in _tracked_files(course.root) if in_autograder(rel, course, stage) and (course.root / rel).is_file()]
    names = []
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in (
            ("setup.sh", SETUP_SH.format(torch=torch_pin(course.root), course=GRADESCOPE_COURSE_DIR)),
            ("run_autograder", RUN_AUTOGRADER.format(course=GRADESCOPE_COURSE_DIR, stage=stage.id)),
        ):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16  # executable, as Gradescope requires
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text)
            names.append(name)
        for rel in sorted(files):
            name = f"{GRADESCOPE_COURSE_DIR}/{rel.as_posix()}"
            zf.write(course.root / rel, name)
            names.append(name)
    return names


def run_gradescope(course, stage: "Stage", submission: Path, results_path: Path) -> dict:
    """Grade one Gradescope submission and write its results.json (what run_autograder calls)."""
    from .. import intake
    from .batch import grade_submission
    from .outcome import Outcome, error_records, expected_checks

    expected = expected_checks(stage)
    try:
        folder = intake.take(submission, stage).folder
    except intake.Refused as exc:
        note = f"{exc}\nUpload {', '.join(stage.files)} itself, or the {stage.id} folder that holds it."
        outcome = Outcome("submission", error_records(stage, expected, note), note)
    else:
        try:
            outcome = grade_submission(course, stage, folder, expected, learner="submission")
        except Exception as exc:  # noqa: BLE001 - Gradescope must always get a results.json
            note = f"The grader could not grade this submission ({type(exc).__name__}: {exc}). Nothing was counted."
            outcome = Outcome("submission", error_records(stage, expected, note), note)
    results = gradescope_results(outcome.records, outcome.note, outcome.seconds)
    # Where Gradescope's image forbids bubblewrap, the instructor must know: in the
    # autograder's output (run_autograder's stdout) and in the results' extra_data.
    sandbox = isolation_summary(outcome.isolation) if outcome.isolation else "learner code did not run"
    results.setdefault("extra_data", {})["sandbox"] = sandbox
    print(f"Sandbox: {sandbox}", flush=True)
    _write_json(results_path, results)
    return results


def gradescope_command(course, stage: "Stage", args) -> int:
    """`python -m grader gradescope STAGE [--zip FILE]`, or `--run SUBMISSION --results FILE` inside Gradescope."""
    from ..course import CourseError

    if course.is_release:
        raise CourseError("The autograder needs the hidden checks and the reference, which a student release does not have.")
    if args.run is not None:
        if args.results is None:
            raise CourseError("--run needs --results FILE (Gradescope reads /autograder/results/results.json).")
        results = run_gradescope(course, stage, args.run, args.results)
        print(f"{args.results}: {results['score']:g} points")
        return 0
    zip_path = args.zip_path or Path(f"gradescope-{stage.id}.zip")
    names = build_gradescope_zip(course, stage, zip_path)
    print(f"Wrote {zip_path} ({len(names)} files): setup.sh, run_autograder and the course, hidden checks included.")
    print(
        "On Gradescope: create a Programming Assignment, upload this zip as its autograder and set its points to "
        f"{stage.points}. Learners upload {', '.join(stage.files)} (or the {stage.id} folder). "
        "Keep the zip private: it holds the reference solutions of this stage and the earlier ones."
    )
    return 0
