"""exercises/ is generated from solutions/: each marked region becomes a stub.

    ### BEGIN SOLUTION
    # Hint: count every adjacent pair.      <- hint comments stay in the stub
    ...reference code...                     <- replaced by `raise NotImplementedError(...)`
    ### END SOLUTION
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from .course import Course, CourseError
from .registry import load_checks

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("Write this part of {owner}, then run the check again.")'
STUB_OWNER = re.compile(r'raise NotImplementedError\("Write this part of ([\w.]+),')
DEF = re.compile(r"^(\s*)(?:async\s+)?(def|class)\s+(\w+)")
# What a student release leaves out: the reference, the hidden checks, the mutants (they
# quote the reference), the project's own tests and benchmarks, and the authors' and
# instructors' docs. Its README.md is written for learners, from docs/RELEASE_README.md.
NOT_RELEASED = {"solutions", "tests", "benchmarks", "docs", ".git", ".ci", ".venv", "mutants", "hidden.py", "__pycache__"}
RELEASE_README = Path("docs") / "RELEASE_README.md"


def make_stub(source: str, filename: str = "<solution>") -> str:
    """The learner's version of one solution file."""
    out: list[str] = []
    lines = source.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() != BEGIN:
            if line.strip() == END:
                raise CourseError(f"{filename}:{i + 1}: {END} without a {BEGIN} before it.")
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        owner = _enclosing(lines, i, indent)
        if owner is None:
            raise CourseError(f"{filename}:{i + 1}: a solution region must be inside a function or method.")
        i += 1
        in_hint = False
        while i < len(lines) and (
            lines[i].strip().startswith("# Hint") or (in_hint and lines[i].strip().startswith("#  "))
        ):
            out.append(lines[i])
            in_hint = True
            i += 1
        start = i
        while i < len(lines) and lines[i].strip() != END:
            if lines[i].strip() == BEGIN:
                raise CourseError(f"{filename}:{i + 1}: solution regions cannot be nested.")
            i += 1
        if i == len(lines):
            raise CourseError(f"{filename}:{start}: {BEGIN} without an {END}.")
        out.append(indent + STUB.format(owner=owner) + "\n")
        i += 1
    return "".join(out)


def _enclosing(lines: list[str], index: int, indent: str) -> str | None:
    """'Tokenizer.train' for a region inside method train of class Tokenizer."""
    names: list[str] = []
    width = len(indent)
    for line in reversed(lines[:index]):
        match = DEF.match(line)
        if match and len(match.group(1)) < width:
            names.append(match.group(3))
            width = len(match.group(1))
            if width == 0:
                break
    if not names:
        return None
    return ".".join(reversed(names))


def unwritten_parts(files: list[Path]) -> list[str]:
    """The parts whose generated stub is still in the learner's files, in file order."""
    found = []
    for path in files:
        if path.is_file():
            found += STUB_OWNER.findall(path.read_text(encoding="utf-8"))
    return found


def generated_exercises(course: Course) -> dict[Path, str]:
    """exercises/<stage>/<file> -> text, for every available stage."""
    files = {}
    for stage in course.stages:
        if not stage.available:
            continue
        for name in stage.files:
            source = course.root / "solutions" / stage.id / name
            if not source.is_file():
                raise CourseError(f"{source} is missing.")
            files[Path("exercises") / stage.id / name] = make_stub(source.read_text(encoding="utf-8"), str(source))
    return files


def check_in_sync(course: Course) -> list[str]:
    """Every difference between the committed exercises/ and what solutions/ generates."""
    problems = []
    for relative, text in generated_exercises(course).items():
        path = course.root / relative
        if not path.is_file():
            problems.append(f"{relative} is missing: run `python -m grader release --write-exercises`.")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{relative} differs from what solutions/ generates.")
        if not (path.parent / "README.md").is_file():
            problems.append(f"{relative.parent}/README.md (the handout) is missing.")
    if problems:
        problems.append("Regenerate with `python -m grader release --write-exercises` and commit the result.")
    return problems


def write_exercises(course: Course) -> list[Path]:
    written = []
    for relative, text in generated_exercises(course).items():
        path = course.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(relative)
    return written


def build_release(course: Course, outdir: Path) -> None:
    """A copy of the course for students: no solutions, no hidden checks, no mutants."""
    outdir = outdir.resolve()
    if outdir == course.root or course.root in outdir.parents:
        raise CourseError("Write the release outside the course folder.")
    if outdir.exists() and any(outdir.iterdir()):
        raise CourseError(f"{outdir} is not empty; choose a new folder.")
    problems = check_in_sync(course)
    if problems:
        raise CourseError("exercises/ is not in sync with solutions/:\n" + "\n".join(problems))
    tracked = _tracked_files(course.root)
    for relative in tracked:
        if set(relative.parts) & NOT_RELEASED or relative.name in NOT_RELEASED:
            continue
        target = outdir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(course.root / relative, target)
    hidden = {}
    for stage in course.stages:
        path = stage.suite_dir / "hidden.py"
        if path.is_file():
            hidden[stage.id] = len(load_checks(path, "hidden"))
    manifest = outdir / "grader" / "release_manifest.json"
    manifest.write_text(json.dumps({"hidden_checks": hidden}, indent=2) + "\n", encoding="utf-8")
    (outdir / "README.md").write_text(learner_readme(course), encoding="utf-8")


def learner_readme(course: Course) -> str:
    """The release's README: the learner's quickstart and the table of the stages it holds."""
    rows = ["| stage | what you build | points |", "| --- | --- | --- |"]
    rows += [f"| {s.id} | {s.title} | {s.points} |" for s in course.stages if s.available]
    template = (course.root / RELEASE_README).read_text(encoding="utf-8")
    return template.replace("{title}", f"{course.name}: {course.title}").replace("{stage_table}", "\n".join(rows))


def _tracked_files(root: Path) -> list[Path]:
    """The files git tracks or would track (nothing ignored leaks into a release)."""
    import subprocess

    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root, capture_output=True, check=True).stdout
        return [Path(p) for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        return [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
