"""The student release, set up from scratch and used the way a learner (and a GitHub Classroom
template) uses it: the README's command in a fresh copy, with nothing of this repository
beside it.

Set-up runs for real: a new .venv and a pip install of the release itself. It reuses the torch
of the Python running the tests (course.py does that for any learner whose torch lives in
another environment), so no torch is downloaded.
"""
import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_grader
from grader.course import load_course
from grader.registry import load_checks
from test_exporters import validate_classroom

STAGE = "05_attention"


def learner_env() -> dict:
    """The environment of a learner's shell: nothing that points into this repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run_in(folder: Path, command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """A shell command line, as the learner types it; `python` is the Python they set up with."""
    env = learner_env()
    python_dir = folder.parent / "bin"
    python = python_dir / "python"
    if not python.exists():  # a script, not a link: a venv's python knows its venv by the path it was started by
        python_dir.mkdir(exist_ok=True)
        python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        python.chmod(0o755)
    env["PATH"] = f"{python_dir}{os.pathsep}{env['PATH']}"
    return subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A learner's copy of the release: no .git, no .venv, nothing of this repository."""
    built = tmp_path_factory.mktemp("built") / "release"
    out = run_grader("release", str(built))
    assert out.returncode == 0, out.stderr
    copy = tmp_path_factory.mktemp("learner") / "scratchgpt"
    shutil.copytree(built, copy, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__"))
    return copy


@pytest.fixture(scope="module")
def first_check(course):
    """The README's learner command, the first time: set-up, then the stage's public checks."""
    return run_in(course, f"python course.py check {STAGE}")


def test_first_check_sets_up_and_reports_the_stub(course, first_check):
    out = first_check.stdout
    assert "Creating .venv/" in out and "Installing the course's packages" in out, out + first_check.stderr
    assert "Score:" in out and first_check.returncode == 1, out + first_check.stderr  # set up, then checked
    assert "(hidden)" not in out
    hidden = len(load_checks(ROOT / "grader" / "suites" / STAGE / "hidden.py", "hidden"))
    assert f"{hidden} hidden check(s) exist for this stage" in out
    public = load_checks(course / "grader" / "suites" / STAGE / "public.py", "public")
    lines = [line for line in out.splitlines() if line.lstrip().startswith(("✓", "✗"))]
    assert len(lines) == len(public) and all(line.lstrip().startswith("✗") for line in lines), out
    assert "Not implemented yet" in out  # said once for the checks that share the cause
    assert f"Score: 0/{sum(c.points for c in public):g}" in out


def test_the_release_itself_is_installed(course, first_check):
    python = course / ".venv" / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import grader; print(grader.__file__)"],
                           cwd=course.parent, env=learner_env(), capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve().is_relative_to(course.resolve())


def test_set_up_once(course, first_check):
    again = run_in(course, "python course.py setup")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Installing" not in again.stdout and "Creating" not in again.stdout
    check = run_in(course, f"python course.py check {STAGE}")
    assert "Installing" not in check.stdout and "Score: 0/" in check.stdout
    # The learner's set-up has what `train` needs; an instructor's adds nbgrader in one command.
    assert run_in(course, ".venv/bin/python -c 'import tqdm, matplotlib'").returncode == 0
    instructor = run_in(course, "python course.py setup --instructor")
    assert instructor.returncode == 0 and "Installing" in instructor.stdout, instructor.stdout + instructor.stderr
    assert run_in(course, ".venv/bin/python -c 'import nbgrader'").returncode == 0
    assert "Installing" not in run_in(course, f"python course.py check {STAGE}").stdout


def test_list(course, first_check):
    out = run_in(course, ".venv/bin/python -m grader list")
    assert out.returncode == 0, out.stderr
    for stage in load_course(course).stages:
        assert stage.id in out.stdout


def classroom_steps() -> list[str]:
    """The `run:` lines of the README's GitHub Classroom workflow."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    workflow = readme.split("### GitHub Classroom", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    block = workflow.split("run: |", 1)[1]
    indent = None
    steps = []
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        indent = indent or width
        if width < indent:
            break
        steps.append(line.strip())
    return steps


def test_github_classroom_workflow(course, first_check, tmp_path):
    steps = classroom_steps()
    assert any("grader.classgrading.exporters classroom" in step for step in steps), steps
    output = tmp_path / "github_output"
    out = run_in(course, f"export GITHUB_OUTPUT={shlex.quote(str(output))}\nset -e\n" + "\n".join(steps))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = output.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("result="), lines
    results = json.loads(base64.b64decode(lines[0].removeprefix("result=")))
    validate_classroom(results)
    stage_id = re.search(r"grader check (\S+)", " ".join(steps)).group(1)
    assert results["status"] == "fail" and results["tests"]
    assert all(test["score"] == 0 for test in results["tests"])
    assert results["max_score"] < load_course(course).stage(stage_id).points  # public checks only


def test_the_reference_is_not_there_to_check(course, first_check):
    out = run_in(course, ".venv/bin/python -m grader check 02_bigram --impl solutions")
    assert out.returncode == 2 and "student release" in out.stderr, out.stdout + out.stderr


def test_project_tests_are_not_in_the_release(course):
    out = run_in(course, "python course.py test")
    assert out.returncode == 2
    assert "not part of the student release" in out.stdout
    assert "pytest" not in out.stdout + out.stderr and "Installing" not in out.stdout


def test_readme_is_for_learners(course):
    readme = (course / "README.md").read_text(encoding="utf-8")
    assert "python course.py check 01_bpe" in readme
    for stage in load_course(course).stages:
        assert f"| {stage.id} |" in readme
    assert "exercises/<stage>/README.md" in readme and "train" in readme
    for instructors_only in ("course.py test", "nbgrader autograde", "--impl solutions", "selftest", "grader grade"):
        assert instructors_only not in readme


def markdown_files(course: Path) -> list[Path]:
    return sorted(p for p in course.rglob("*.md") if ".venv" not in p.parts)


def test_every_relative_link_resolves(course):
    missing = []
    for page in markdown_files(course):
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                missing.append(f"{page.relative_to(course)}: {target}")
    assert not missing


def quoted_grader_commands(text: str) -> list[list[str]]:
    """Every `python -m grader ...` in inline code or a code block, as its words."""
    found = []
    for match in re.finditer(r"python -m grader ([^`\n#]*)", text):
        found.append(shlex.split(match.group(1).strip()))
    return found


def test_every_quoted_command_needs_only_what_the_release_has(course, first_check):
    """Each `python -m grader` command the release's pages quote exists in its grader, uses
    only options its grader has, names stages it holds, and needs no solutions/, hidden
    suites or tests."""
    stages = {s.id for s in load_course(course).stages}
    python = str(course / ".venv" / "bin" / "python")
    helps: dict[str, str] = {}
    problems = []
    for page in markdown_files(course):
        for words in quoted_grader_commands(page.read_text(encoding="utf-8")):
            where = f"{page.relative_to(course)}: python -m grader {' '.join(words)}"
            if not words:
                continue
            command = words[0]
            if command not in helps:
                out = subprocess.run([python, "-m", "grader", command, "--help"], cwd=course,
                                     env=learner_env(), capture_output=True, text=True)
                helps[command] = out.stdout if out.returncode == 0 else ""
            if not helps[command]:
                problems.append(f"{where}: no such command")
                continue
            for word in words[1:]:
                option = word.split("=")[0]
                if option.startswith("--") and option not in helps[command]:
                    problems.append(f"{where}: no option {option}")
                if re.fullmatch(r"\d\d_\w+", word) and word not in stages:
                    problems.append(f"{where}: no stage {word}")
            needs = {"solutions": "--impl solutions" in " ".join(words), "selftest": command == "selftest"}
            if any(needs.values()) or command in ("grade", "gradescope", "nbgrader", "release"):
                problems.append(f"{where}: needs the full course repository")
    assert not problems, "\n".join(problems)
