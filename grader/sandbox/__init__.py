"""Isolated grading: learner code in a sandboxed child process, judged from outside.

    python -m grader check 02_bigram --impl PATH --isolate --json results.json

- `jail`: the child's folder, sandbox (bubblewrap where the machine has it), limits and pipes.
- `child`: the server inside the sandbox that imports the learner's modules.
- `remote`: `RemoteImplementation`, the handle the suites use, with `Implementation`'s interface.
- `protocol`: framing, and the markers in the child's plain-data answers.

This package imports no torch at import time: the child imports it once it is sandboxed.
"""
from .jail import Limits, SandboxFailure, SandboxUnavailable


def overhead_seconds() -> float:
    """Seconds spent crossing to the sandboxed process and back (0.0 when nothing is isolated)."""
    import sys

    remote = sys.modules.get(__name__ + ".remote")
    return remote.overhead_seconds() if remote is not None else 0.0


__all__ = ["Limits", "SandboxFailure", "SandboxUnavailable", "overhead_seconds"]
