"""Known bugs, kept as small edits of the reference, that the suites must catch.

Each stage has a file `grader/mutants/<stage>.py` with a list `MUTANTS`. `selftest`
applies each edit to a copy of the reference and runs the whole suite on it: the check that
must catch it has to fail, its message has to name the cause (contain `message`), and no
check may crash.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..course import CourseError, Stage


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str  # the bug, as a learner would describe what they did
    file: str
    find: str  # must occur exactly once in the reference file
    replace: str
    caught_by: str  # the check id that must fail
    message: str  # a phrase the failure message must contain (case-insensitive)
    more_edits: tuple[tuple[str, str], ...] = ()  # further (find, replace) pairs of the same bug

    def apply(self, source: str) -> str:
        for find, replace in ((self.find, self.replace), *self.more_edits):
            count = source.count(find)
            if count != 1:
                raise CourseError(f"mutant {self.name}: {find!r} occurs {count} times in {self.file}, expected once.")
            source = source.replace(find, replace)
        return source


def load_mutants(stage: Stage) -> list[Mutant]:
    path = stage.mutants_file
    if not path.is_file():
        return []
    spec = importlib.util.spec_from_file_location(f"grader_mutants_{stage.id}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.MUTANTS)


def write_mutant(mutant: Mutant, reference_dir: Path, target_dir: Path) -> None:
    """A copy of the reference stage folder with one bug in it."""
    target_dir.mkdir(parents=True)
    for source in reference_dir.iterdir():
        if source.is_file():
            text = source.read_text(encoding="utf-8")
            if source.name == mutant.file:
                text = mutant.apply(text)
            (target_dir / source.name).write_text(text, encoding="utf-8")
