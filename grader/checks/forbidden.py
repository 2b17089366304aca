"""'From scratch': a static scan of the learner's files for the APIs a stage forbids.

The scan reads the source from the grader's side, so learner code cannot switch it off.
A forbidden name is either a package (`tiktoken`: any import of it) or a dotted API
(`torch.nn.functional.layer_norm`: any attribute access, import or getattr of its last
name, however the module was aliased).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    api: str

    def describe(self) -> str:
        return f"{self.file} line {self.line} uses {self.api}"


def scan(files: list[Path], forbidden: tuple[str, ...]) -> list[Violation]:
    packages = {f for f in forbidden if "." not in f}
    apis = {f.rsplit(".", 1)[1]: f for f in forbidden if "." in f}
    found: list[Violation] = []
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            continue  # loading the file reports these, with the line
        for node in ast.walk(tree):
            for api in _uses(node, packages, apis):
                found.append(Violation(path.name, getattr(node, "lineno", 0), api))
    return sorted(set(found), key=lambda v: (v.file, v.line))


def _uses(node: ast.AST, packages: set[str], apis: dict[str, str]):
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] in packages:
                yield alias.name
    elif isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if module.split(".")[0] in packages:
            yield module
        for alias in node.names:
            if alias.name in apis:
                yield apis[alias.name]
    elif isinstance(node, ast.Attribute) and node.attr in apis:
        # `self.softmax` is the learner's own method, not torch's.
        if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
            yield apis[node.attr]
    elif isinstance(node, ast.Call) and _called_name(node.func) in ("getattr", "import_module", "__import__"):
        # getattr(F, "layer_norm"), importlib.import_module("tiktoken"), __import__("tiktoken")
        for arg in node.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if arg.value in apis:
                    yield apis[arg.value]
                elif arg.value.split(".")[0] in packages:
                    yield arg.value


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""
