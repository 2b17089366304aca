"""What a failing check tells the learner: the diagnosis first, no internal names, hints that
fit the line that failed, and one cause charged by one check."""
from __future__ import annotations

import ast
import re
import sys

import pytest

from conftest import ROOT
from grader.checks import cause, failing_line
from grader.course import load_course
from grader.handle import LearnerError, learner_location, resolve
from grader.mutants import load_mutants, write_mutant
from grader.report import diagnosis, render
from grader.results import FAILED, PASSED, Record
from grader.runner import run_stage, stage_checks

COURSE = load_course()


def _message_strings(path):
    """(line, text) of every string literal in a file that reads as prose (has a space), docstrings
    left out: the text of messages, hints and titles."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if " " in node.value.strip():
                yield node.lineno, node.value


def _api_names():
    """Every identifier of the reference solutions: a check id that is also a name of the learner's
    API (special_tokens) is the learner's word, not an internal one."""
    names = set()
    for path in (ROOT / "solutions").rglob("*.py"):
        names |= set(re.findall(r"\b\w+\b", path.read_text(encoding="utf-8")))
    return names


def test_no_message_names_a_check_by_its_id():
    """Reports show titles, never check ids: "fix values_match_oracle first" means nothing to a learner."""
    ids = {c.id for stage in COURSE.stages for c in stage_checks(stage)}
    internal = sorted(i for i in ids - _api_names() if "_" in i)  # a one-word id (causal, speed) is plain English
    assert "values_match_oracle" in internal and "dropout_modes" in internal  # the scan would see the old messages
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, internal)) + r")\b")
    files = sorted((ROOT / "grader" / "suites").rglob("*.py")) + sorted((ROOT / "grader" / "checks").glob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}:{line}: {match.group(0)}"
        for path in files
        for line, text in _message_strings(path)
        for match in pattern.finditer(text)
    ]
    assert not found, found


def _record(message: str) -> Record:
    return Record("05_attention", "values_match_oracle", "Head(x) equals the oracle", 0, 3, FAILED, message,
                  "public", 0.1)


def test_fix_first_quotes_the_diagnosis_not_the_symptom():
    symptom = "Head(x) (sizes: B=2, T=8) is wrong at 54 of 60 positions (tolerance 1e-05 + 0.0001*|expected|)."
    diagnosed = _record(f"{symptom}\nFirst: index [0, 0, 0]: got 0.1, expected 0.05.\n"
                        + cause("Your scores are scaled by C ** -0.5 instead of head_size ** -0.5."))
    text = render(COURSE.stage("05_attention"), [diagnosed], "submission", width=200)
    assert "Fix first: Head(x) equals the oracle: Your scores are scaled by C ** -0.5 instead of head_size ** -0.5." in text
    assert "Likely cause: Your scores" in text  # the message itself keeps the label
    # A message without a marked diagnosis states its cause up front: its first line is quoted.
    assert diagnosis(f"{symptom}\nmore") == symptom


@pytest.fixture(scope="module")
def mutants_folder(tmp_path_factory):
    """Write one stage's mutant into a learner-like folder: `make(stage_id, name)`."""
    root = tmp_path_factory.mktemp("mutants")

    def make(stage_id: str, name: str):
        stage = COURSE.stage(stage_id)
        mutant = next(m for m in load_mutants(stage) if m.name == name)
        folder = root / name
        write_mutant(mutant, ROOT / "solutions" / stage.id, folder / stage.id)
        return stage, resolve(COURSE, stage, str(folder), "reference")

    return make


def test_a_real_failure_leads_with_its_diagnosis(mutants_folder):
    stage, impl = mutants_folder("05_attention", "scaled_by_C")
    records = run_stage(COURSE, stage, impl, only="values_match_oracle")
    assert records[0].status == FAILED
    text = " ".join(render(stage, records, "submission", width=100).split())
    assert re.search(r"Fix first: .*: Your scores are scaled by C \*\* -0\.5", text), text


def test_the_failing_line_is_read_from_the_traceback(tmp_path):
    import torch

    (tmp_path / "learner_module_for_failing_line.py").write_text(
        "def forward(mask):\n    doubled = mask * 2\n    return doubled + mask.T\n", encoding="utf-8"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import learner_module_for_failing_line as learner

        with pytest.raises(RuntimeError) as raised:
            learner.forward(torch.ones(2, 3))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("learner_module_for_failing_line", None)
    where = learner_location(raised.value, [tmp_path])
    assert where == "learner_module_for_failing_line.py, line 3, in forward"
    assert failing_line(LearnerError(raised.value, where, "forward()")) == "return doubled + mask.T"
    assert failing_line(LearnerError(ValueError("no traceback"), "", "f()")) == ""


@pytest.mark.parametrize("name", ["temperature_zero_divides", "temperature_multiplies"])
def test_a_temperature_bug_is_not_charged_to_cropping(mutants_folder, name):
    """08's cropping check decodes greedily in whichever way this generate supports, so a bug in
    temperature costs only the temperature checks."""
    stage, impl = mutants_folder("08_gpt2", name)
    records = run_stage(COURSE, stage, impl, only="generate_crops_context")
    assert records[0].status == PASSED, records[0].message


def test_the_mask_is_blamed_only_when_the_failing_line_uses_it(mutants_folder):
    """05: an exception while T < block_size is put down to the mask only when the line that raised
    it uses the mask; a shape error elsewhere gets the shapes, not the mask."""
    stage, impl = mutants_folder("05_attention", "values_transposed")
    message = run_stage(COURSE, stage, impl, only="output_shape")[0].message
    assert "Follow the shapes" in message and "mask" not in message, message
    stage, impl = mutants_folder("05_attention", "mask_not_sliced")
    message = run_stage(COURSE, stage, impl, only="output_shape")[0].message
    assert "Likely cause: `wei = wei.masked_fill(self.tril == 0" in message and "[:T, :T]" in message, message
