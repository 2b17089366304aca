"""A learner's stage may import every earlier stage, and helper modules of its own, and it
imports them the same way in every mode: check in-process, --isolate, grade, Gradescope.

The README tells learners to reuse their own stages; a 06 `multihead.py` that does
`from softmax import causal_mask` must not pass `check` and then get ModuleNotFoundError on
every check when an instructor grades it.
"""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import ROOT, run_grader
from grader.course import load_course
from grader.handle import resolve
from grader.runner import run_stage, stage_checks
from grader.sandbox.remote import RemoteImplementation

COURSE = load_course()
STAGES = [s for s in COURSE.stages if s.available]
HELPER = "my_helpers"


def submission_importing_earlier_stages(stage, folder):
    """A learner's copy of the course up to `stage` (the references), whose stage file first
    imports every earlier stage's modules and a helper module written beside it."""
    for dep in COURSE.dependencies(stage):  # their own earlier stages, for --deps own
        shutil.copytree(ROOT / "solutions" / dep.id, folder / dep.id)
    target = folder / stage.id
    shutil.copytree(ROOT / "solutions" / stage.id, target)
    earlier = [name for dep in COURSE.dependencies(stage) for name in dep.module_names]
    (target / f"{HELPER}.py").write_text("ANSWER = 42\n")
    header = "".join(f"import {name}\n" for name in [*earlier, HELPER])
    header += f"assert {HELPER}.ANSWER == 42 and all(m.__file__ for m in [{', '.join([*earlier, HELPER])}])\n"
    main = target / stage.files[0]
    source = main.read_text()
    # after `from __future__` imports, which must stay first
    lines = source.splitlines(keepends=True)
    at = max((i + 1 for i, line in enumerate(lines) if line.startswith("from __future__")), default=0)
    main.write_text("".join(lines[:at]) + header + "".join(lines[at:]))
    return folder


@pytest.mark.parametrize("stage", STAGES, ids=[s.id for s in STAGES])
def test_imports_of_earlier_stages_load_in_process_and_isolated(stage, tmp_path):
    folder = submission_importing_earlier_stages(stage, tmp_path)
    first = stage_checks(stage)[0].id
    for deps in ("reference", "own"):
        impl = resolve(COURSE, stage, str(folder), deps)
        local = run_stage(COURSE, stage, impl, only=first)
        remote = RemoteImplementation(resolve(COURSE, stage, str(folder), deps), COURSE)
        try:
            isolated = run_stage(COURSE, stage, remote, only=first)
        finally:
            remote.close()
        for mode, records in (("in-process", local), ("isolated", isolated)):
            assert [r.status for r in records] == ["passed"], f"{mode}, --deps {deps}: {records[0].message}"


def test_grade_and_gradescope_score_a_stage_that_imports_its_own_earlier_ones(tmp_path):
    stage = COURSE.stage("06_multihead")
    learner = submission_importing_earlier_stages(stage, tmp_path / "class" / "ada")
    out = run_grader("grade", str(learner.parent), "--stage", stage.id, "--out", str(tmp_path / "grades"))
    assert out.returncode == 0, out.stdout + out.stderr
    graded = json.loads((tmp_path / "grades" / "records" / "ada.json").read_text())
    assert graded["score"] == graded["max_score"] == stage.points, graded["note"]

    results = tmp_path / "results.json"
    out = run_grader("gradescope", stage.id, "--run", str(learner / stage.id), "--results", str(results))
    assert out.returncode == 0, out.stdout + out.stderr
    payload = json.loads(results.read_text())
    assert payload["score"] == stage.points, payload.get("output")
