"""How a suite declares its checks: `@check(title, points)` on a function of `impl` (and `ref`)."""
from __future__ import annotations

import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class CheckFailure(AssertionError):
    """A check found wrong behaviour; the message is what the learner reads."""


class Skip(Exception):
    """A check that cannot run here (no GPU, an optional package missing): neither pass nor fail."""


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    points: float
    visibility: str
    func: Callable
    fixtures: tuple[str, ...]


_pending: list[tuple[str, float, Callable]] = []


def check(title: str, points: float = 1):
    """Register a check of the suite being loaded. Visibility comes from the file it is in."""

    def register(func: Callable) -> Callable:
        _pending.append((title, points, func))
        return func

    return register


def _fixtures(func: Callable) -> tuple[str, ...]:
    # hypothesis' @given hides the drawn arguments from the visible signature.
    return tuple(inspect.signature(func).parameters)


def load_checks(path: Path, visibility: str) -> list[Check]:
    """Import one suite file and return its checks in the order they are written."""
    name = f"grader_suite_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    _pending.clear()
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        found = list(_pending)
    finally:
        _pending.clear()
    return [
        Check(func.__name__, title, points, visibility, func, _fixtures(func))
        for title, points, func in found
    ]
