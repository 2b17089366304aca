"""'From scratch': a static scan of the learner's files for the APIs a stage forbids.

The scan reads the source from the grader's side, so learner code cannot switch it off.
A forbidden name is either a package (`tiktoken`: any import of it) or a dotted API
(`torch.nn.functional.layer_norm`).

Names are resolved through the file's own imports (and plain assignments of what they
import), so the scan knows whose name it is:
- `F.layer_norm` after `import torch.nn.functional as F`, `Fn.layer_norm` after
  `from torch.nn import functional as Fn`, `t.nn.LayerNorm` after `import torch as t`, and
  `from torch.nn.functional import layer_norm as ln` are torch's;
- a learner's own `LayerNorm` class, `norms.LayerNorm` from their module `norms`, and
  `self.softmax` are not.
Anything of the forbidden API's package with the same last name counts as that API
(`torch.layer_norm` and `torch.nn.modules.normalization.LayerNorm` are the same functions
under other paths). A method of `torch.Tensor` is called on values the scan cannot type, so
`.softmax` counts on any value that is not an import, a name the file defines, or `self`.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

# Roots of resolved names that belong to the learner, never to a forbidden package.
_OWN = "<own>"


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    api: str  # the forbidden API as course.toml names it
    written: str = ""  # how the learner's code wrote it, where that differs (`F.layer_norm`)

    def describe(self) -> str:
        shown = f"{self.written} ({self.api})" if self.written and self.written != self.api else self.api
        return f"{self.file} line {self.line} uses {shown}"


def scan(files: list[Path], forbidden: tuple[str, ...]) -> list[Violation]:
    rules = _Rules(forbidden)
    found: list[Violation] = []
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            continue  # loading the file reports these, with the line
        names = _Names(tree)
        for node in ast.walk(tree):
            for api, written in _uses(node, rules, names):
                found.append(Violation(path.name, getattr(node, "lineno", 0), api, written))
    return sorted(set(found), key=lambda v: (v.file, v.line, v.api))


class _Rules:
    """What the stage forbids, looked up by resolved dotted name."""

    def __init__(self, forbidden: tuple[str, ...]):
        self.packages = {f for f in forbidden if "." not in f}
        self.apis = {f for f in forbidden if "." in f}
        self.by_last_name: dict[str, list[str]] = {}
        for api in sorted(self.apis):
            self.by_last_name.setdefault(api.rsplit(".", 1)[1], []).append(api)

    def package(self, module: str) -> str | None:
        return module if module.split(".")[0] in self.packages else None

    def api(self, path: str) -> str | None:
        """The forbidden API a fully resolved dotted name stands for, if any."""
        if path in self.apis:
            return path
        root, name = path.split(".")[0], path.rsplit(".", 1)[-1]
        return next((a for a in self.by_last_name.get(name, ()) if a.split(".")[0] == root), None)

    def tensor_method(self, name: str) -> str | None:
        """A forbidden method of torch.Tensor called `name` (its receiver cannot be typed)."""
        return next((a for a in self.by_last_name.get(name, ()) if a.rsplit(".", 2)[-2] == "Tensor"), None)

    def any_api(self, name: str) -> str | None:
        return next(iter(self.by_last_name.get(name, ())), None)


class _Names:
    """What each name of one file stands for: a dotted import path, the learner's own, or unknown."""

    def __init__(self, tree: ast.Module):
        self.aliases: dict[str, str] = {"self": _OWN, "cls": _OWN}
        self.star_modules: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.aliases[node.name] = f"{_OWN}.{node.name}"
        for node in ast.walk(tree):  # imports win over a definition of the same name
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.aliases[alias.asname] = alias.name
                    else:  # `import torch.nn.functional` binds `torch`
                        self.aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                module = _imported_module(node)
                for alias in node.names:
                    if alias.name == "*":
                        self.star_modules.append(module)
                    else:
                        self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
        # `fn = torch.nn.functional` makes `fn` an alias too (flow-insensitive; a few rounds
        # resolve chains of such assignments).
        assignments = [n for n in ast.walk(tree) if isinstance(n, ast.Assign)]
        for _ in range(3):
            for node in assignments:
                path = self.resolve(node.value)
                if path is None:
                    continue
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id not in self.aliases:
                        self.aliases[target.id] = path

    def resolve(self, expr: ast.expr) -> str | None:
        """The dotted name an expression stands for, or None when the scan cannot know."""
        if isinstance(expr, ast.Name):
            return self.aliases.get(expr.id)
        if isinstance(expr, ast.Attribute):
            owner = self.resolve(expr.value)
            return None if owner is None else f"{owner}.{expr.attr}"
        return None

    def star_import(self, name: str) -> list[str]:
        """`softmax` after `from torch.nn.functional import *`, when the file does not define it."""
        return [] if name in self.aliases else [f"{m}.{name}" for m in self.star_modules]


def _imported_module(node: ast.ImportFrom) -> str:
    # `from . import x` and `from .norms import x` are the learner's own modules.
    return f"{_OWN}.{node.module or ''}" if node.level else (node.module or "")


def _uses(node: ast.AST, rules: _Rules, names: _Names):
    """(forbidden API, as written) for each forbidden use in this node."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if rules.package(alias.name):
                yield alias.name, ""
    elif isinstance(node, ast.ImportFrom):
        module = _imported_module(node)
        if rules.package(module):
            yield module, ""
            return
        for alias in node.names:
            api = alias.name != "*" and rules.api(f"{module}.{alias.name}")
            if api:
                yield api, f"from {module} import {alias.name}"
    elif isinstance(node, ast.Attribute):
        path = names.resolve(node)
        if path is not None:
            api = rules.api(path)
        elif names.resolve(node.value) is None:
            api = rules.tensor_method(node.attr)  # `scores.softmax(-1)`: a tensor, most likely
        else:
            api = None
        if api:
            yield api, _written(node)
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        for path in names.star_import(node.id):
            api = rules.api(path)
            if api:
                yield api, node.id
    elif isinstance(node, ast.Call) and _called_name(node.func) in ("getattr", "import_module", "__import__"):
        yield from _dynamic_uses(node, rules, names)


def _dynamic_uses(node: ast.Call, rules: _Rules, names: _Names):
    """getattr(F, "layer_norm"), importlib.import_module("tiktoken"), __import__("tiktoken")."""
    strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if not strings:
        return
    if _called_name(node.func) == "getattr" and len(node.args) >= 2:
        owner = names.resolve(node.args[0])
        name = strings[0]
        if owner is None:
            api = rules.any_api(name)  # a forbidden name looked up on something the scan cannot type
        else:
            api = rules.api(f"{owner}.{name}")
        if api:
            yield api, _written(node)
        return
    for text in strings:
        api = rules.package(text) or rules.api(text)
        if api:
            yield api, _written(node)


def _written(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""
