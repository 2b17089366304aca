"""The implementation handle: the only way a suite touches the code under test.

Suites never hold a learner's object. Every call goes through a handle that passes data in
and returns plain data out: tensors (detached copies), numbers, strings, bytes, lists,
tuples and dicts of those. Anything else the learner returns (a model, a tokenizer) comes
back as another handle whose methods can be called the same way. All judgement happens in
the suite, on plain data, so a learner object cannot vouch for itself (an `__eq__` that
always says True never reaches a comparison), and the same suites can later run with the
learner's code in a separate process.
"""
from __future__ import annotations

import importlib
import re
import sys
import traceback
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import intake
from .course import Course, CourseError, Stage

PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)
CALLABLES = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.BuiltinMethodType)


class LoadError(Exception):
    """The learner's files could not be imported; the message says why, in their words."""


class LearnerError(Exception):
    """The learner's code raised. Keeps the original and where it happened in their files."""

    def __init__(self, original: BaseException, where: str, call: str):
        self.original, self.where, self.call = original, where, call
        super().__init__(self.describe())

    def traceback(self) -> str:
        """The learner's traceback, shown with -v."""
        return "".join(traceback.format_exception(self.original)).rstrip()

    def describe(self) -> str:
        kind = type(self.original).__name__
        detail = str(self.original).strip()
        detail = f": {detail}" if detail else ""
        place = f" ({self.where})" if self.where else ""
        return f"Your code raised {kind}{detail}{place}, when the grader called {self.call}."


class NotImplementedByLearner(BaseException):
    """A stub was reached. A BaseException, so that hypothesis stops at once instead of
    shrinking an example that no input can fix."""

    def __init__(self, original: NotImplementedError, where: str, call: str):
        self.original, self.where, self.call = original, where, call
        super().__init__(self.describe())

    def describe(self) -> str:
        # The generated stubs say which function they stand for; hand-written ones may not.
        match = re.search(r"Write this part of ([\w.]+)", str(self.original))
        name = match.group(1) if match else self.call
        place = f" ({self.where.rsplit(', in ', 1)[0]})" if self.where else ""
        return f"Not implemented yet: {name}{place}."


class Implementation:
    """The code under test for one stage: the learner's files, or the reference's."""

    def __init__(self, label: str, stage: Stage, search_path: list[Path], refused: str = ""):
        self.label = label  # shown in reports
        self.role = "impl"  # how hypothesis' failing examples name it
        self.stage = stage
        self.search_path = search_path  # the stage's own folder first, then its dependencies
        self.refused = refused  # why intake would not take these files (grader/intake.py); "" when it did
        self._modules: dict[str, types.ModuleType] = {}

    def __repr__(self) -> str:
        return self.role

    @property
    def files(self) -> list[Path]:
        """The stage's files; none when intake refused them (nothing of them is read)."""
        return [] if self.refused else [self.search_path[0] / f for f in self.stage.files]

    def load(self, all_module_names: set[str]) -> None:
        if self.refused:
            raise LoadError(self.refused)
        for path in self.files:
            if not path.is_file():
                raise LoadError(f"{path} is missing. Each stage needs its files: {', '.join(self.stage.files)}.")
        saved_path, saved_bytecode = list(sys.path), sys.dont_write_bytecode
        # Stage modules have plain names (bpe, attention) so that a learner's imports read
        # naturally; forget any copy imported from another implementation first.
        for name in all_module_names:
            sys.modules.pop(name, None)
        sys.path[:0] = [str(p) for p in self.search_path]
        sys.dont_write_bytecode = True  # never write __pycache__ into a learner's folder
        try:
            for name in self.stage.module_names:
                self._modules[name] = importlib.import_module(name)
        except SyntaxError as exc:
            line = (exc.text or "").rstrip("\n")
            pointer = " " * max((exc.offset or 1) - 1, 0) + "^" if line else ""
            raise LoadError(
                f"{Path(exc.filename or '?').name} has a syntax error on line {exc.lineno}: {exc.msg}.\n"
                f"    {line.strip()}\n    {pointer[len(line) - len(line.lstrip()):]}".rstrip()
            ) from None
        except BaseException as exc:  # noqa: BLE001 - anything a learner's module does at import
            if isinstance(exc, KeyboardInterrupt):
                raise
            where = learner_location(exc, self.search_path)
            kind = type(exc).__name__
            raise LoadError(
                f"Importing your code failed: {kind}: {exc} ({where or 'at import time'}). "
                "Code at the top level of a file runs on import; keep experiments under "
                "`if __name__ == \"__main__\":`."
            ) from None
        finally:
            sys.path[:] = saved_path
            sys.dont_write_bytecode = saved_bytecode
            for name in all_module_names:
                sys.modules.pop(name, None)

    def module(self, name: str) -> "ObjectHandle":
        if name not in self._modules:
            raise KeyError(f"{name} is not a module of stage {self.stage.id}")
        return ObjectHandle(self._modules[name], self, name)

    def probe(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run a trusted grader function on learner objects (for gradients, modes, parameters)."""
        return self._call(fn, args, kwargs, probe_call(fn, args))

    def _call(self, fn: Callable, args: tuple, kwargs: dict, call: str) -> Any:
        args, kwargs = unwrap(args), unwrap(kwargs)
        try:
            result = fn(*args, **kwargs)
        except NotImplementedError as exc:
            raise NotImplementedByLearner(exc, learner_location(exc, self.search_path), call) from None
        except (Exception, SystemExit) as exc:
            raise LearnerError(exc, learner_location(exc, self.search_path), call) from None
        return self.to_plain(result, call)

    def to_plain(self, value: Any, call: str = "") -> Any:
        kind = type(value)
        if kind in PLAIN_SCALARS:
            return value
        if isinstance(value, torch.Tensor):
            # A copy of a plain tensor: no subclass, no autograd graph back into learner code.
            return value.detach().as_subclass(torch.Tensor).clone()
        if kind is torch.Size:
            return tuple(int(d) for d in value)
        if kind in (list, tuple):
            return kind(self.to_plain(v, call) for v in value)
        if kind in (dict, OrderedDict):
            return {self.to_plain(k, call): self.to_plain(v, call) for k, v in value.items()}
        if kind is np.ndarray:
            return value.copy()
        if isinstance(value, np.generic) and kind.__module__ == "numpy":
            return value.item()
        return ObjectHandle(value, self, call)


class ObjectHandle:
    """A learner object seen from a suite: call it, call its methods, read plain attributes."""

    __slots__ = ("_target", "_impl", "_name")

    def __init__(self, target: Any, impl: Implementation, name: str):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_impl", impl)
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attr: str) -> Any:
        name = f"{self._name}.{attr}"
        try:
            value = getattr(self._target, attr)
        except AttributeError:
            raise LearnerError(AttributeError(f"{self._name} has no attribute '{attr}'"), "", name) from None
        except (Exception, SystemExit) as exc:
            raise LearnerError(exc, learner_location(exc, self._impl.search_path), name) from None
        if isinstance(value, CALLABLES):
            return LearnerCallable(value, self._impl, name)
        return self._impl.to_plain(value, name)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._target, attr, unwrap(value))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._impl._call(self._target, args, kwargs, f"{self._name}(...)")

    def __repr__(self) -> str:
        return f"<{type(self._target).__name__} from {self._impl.label}>"


class LearnerCallable:
    __slots__ = ("_fn", "_impl", "_name")

    def __init__(self, fn: Callable, impl: Implementation, name: str):
        self._fn, self._impl, self._name = fn, impl, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._impl._call(self._fn, args, kwargs, f"{self._name}()")

    def __repr__(self) -> str:
        return f"<{self._name} from {self._impl.label}>"


def probe_call(fn: Callable, args: tuple) -> str:
    """How messages name a probe's call: by the learner's object it runs (`attention.Head(...)`),
    which the learner knows, rather than by the grader's helper."""
    learner = next((a for a in args if isinstance(a, (ObjectHandle, LearnerCallable))), None)
    if learner is None:
        return fn.__name__
    return learner._name if isinstance(learner, ObjectHandle) else f"{learner._name}()"


def unwrap(value: Any) -> Any:
    """Turn handles back into the objects they stand for; copy tensors the suite owns."""
    if isinstance(value, ObjectHandle):
        return object.__getattribute__(value, "_target")
    if isinstance(value, LearnerCallable):
        return value._fn
    if isinstance(value, torch.Tensor):
        return value.clone()
    if type(value) in (list, tuple):
        return type(value)(unwrap(v) for v in value)
    if type(value) is dict:
        return {k: unwrap(v) for k, v in value.items()}
    return value


def learner_location(exc: BaseException, search_path: list[Path]) -> str:
    """'bpe.py, line 57, in train' for the innermost frame inside the learner's folders."""
    roots = [str(p.resolve()) for p in search_path]
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if any(str(Path(frame.filename).resolve()).startswith(r) for r in roots):
            where = f"{Path(frame.filename).name}, line {frame.lineno}, in {frame.name}"
    return where


def resolve(course: Course, stage: Stage, impl: str, deps: str) -> Implementation:
    """Find the code for `--impl exercises|solutions|PATH`, with earlier stages from `deps`."""
    refused = ""
    if impl in ("exercises", "solutions"):
        if impl == "solutions" and course.is_release:
            raise CourseError("This is a student release: it has no solutions/. Check your own code with --impl exercises.")
        base = course.root / impl
        folder = base / stage.id
        label = impl
    else:
        # Not resolved: intake must see a link as a link (a learner's folder that links to a classmate's).
        base = Path(impl).expanduser().absolute()
        if not (base.exists() or base.is_symlink()):
            raise CourseError(f"--impl {impl}: no such folder.")
        try:
            folder = intake.take(base, stage).folder
        except intake.Refused as exc:
            folder, refused = base, str(exc)
        base = folder.parent  # where the learner's earlier stages are, with --deps own
        label = "submission"
    search_path = [folder]
    for dep in course.dependencies(stage):
        if deps == "reference" and not course.is_release:
            search_path.append(course.root / "solutions" / dep.id)
            continue
        own = base / dep.id
        if label == "submission" and (own.is_symlink() or own.is_dir()) and not refused:
            try:
                intake.take(own, folder=own)
            except intake.Refused as exc:
                refused = f"Your earlier stage {dep.id}: {exc}"
        search_path.append(own if own.is_dir() and not own.is_symlink() else course.root / "exercises" / dep.id)
    return Implementation(label, stage, search_path, refused)


def reference(course: Course, stage: Stage) -> Implementation:
    ref = resolve(course, stage, "solutions", "reference")
    ref.role = "ref"
    return ref
