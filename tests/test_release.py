"""exercises/ is generated from solutions/, and a student release holds no answers."""
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, run_grader
from grader.course import load_course
from grader.registry import load_checks
from grader.release import check_in_sync, make_stub


def test_exercises_are_in_sync():
    assert check_in_sync(load_course()) == []


def test_stub_keeps_hints_and_names_the_function():
    source = (
        "class Model:\n"
        "    def forward(self, x):\n"
        '        """Doc."""\n'
        "        ### BEGIN SOLUTION\n"
        "        # Hint: add one.\n"
        "        #   Then return it.\n"
        "        y = x + 1\n"
        "        return y\n"
        "        ### END SOLUTION\n"
    )
    stub = make_stub(source)
    assert "y = x + 1" not in stub
    assert "# Hint: add one.\n        #   Then return it.\n" in stub
    assert 'raise NotImplementedError("Write this part of Model.forward, then run the check again.")' in stub
    assert '"""Doc."""' in stub


@pytest.mark.parametrize(
    "source, problem",
    [
        ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "inside a function"),
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "without an"),
        ("def f():\n    return 1\n    ### END SOLUTION\n", "without a"),
    ],
)
def test_malformed_markers_are_reported(source, problem):
    from grader.course import CourseError

    with pytest.raises(CourseError, match=problem):
        make_stub(source)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "course"
    result = run_grader("release", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_release_has_no_answers(release):
    files = [p.relative_to(release) for p in release.rglob("*") if p.is_file()]
    assert not any(p.parts[0] in ("solutions", "tests", "benchmarks") for p in files)
    assert not any(p.name == "hidden.py" for p in files)
    assert not any("mutants" in p.parts for p in files)
    assert (release / "exercises" / "01_bpe" / "bpe.py").read_text() == (ROOT / "exercises/01_bpe/bpe.py").read_text()


def test_release_runs_public_checks_and_counts_hidden_ones(release, tmp_path):
    learner = tmp_path / "learner"
    shutil.copytree(ROOT / "solutions" / "02_bigram", learner / "02_bigram")
    out = run_grader("check", "02_bigram", "--impl", str(learner), cwd=release)
    assert out.returncode == 0, out.stdout
    assert "(hidden)" not in out.stdout
    hidden = len(load_checks(ROOT / "grader" / "suites" / "02_bigram" / "hidden.py", "hidden"))
    assert f"{hidden} hidden check(s) exist for this stage" in out.stdout
    stubs = run_grader("check", "02_bigram", cwd=release)
    assert stubs.returncode == 1 and "Not implemented yet" in stubs.stdout


def test_release_refuses_solutions_and_selftest(release):
    out = run_grader("check", "02_bigram", "--impl", "solutions", cwd=release)
    assert out.returncode == 2 and "student release" in out.stderr
    out = run_grader("selftest", cwd=release)
    assert out.returncode == 2 and "student release" in out.stderr


def test_stage_files_run_directly_as_demos():
    out = subprocess.run([sys.executable, "solutions/02_bigram/bigram.py"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "sample:" in out.stdout
