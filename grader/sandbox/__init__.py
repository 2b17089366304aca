"""Isolated grading: learner code in a sandboxed child process, judged from outside.

    python -m grader check 02_bigram --impl PATH --isolate --json results.json

- `jail`: the child's folder, sandbox (bubblewrap where the machine has it), limits and pipes.
- `child`: the server inside the sandbox that imports the learner's modules.
- `remote`: `RemoteImplementation`, the handle the suites use, with `Implementation`'s interface.
- `protocol`: framing, and the markers in the child's plain-data answers.

This package imports no torch at import time: the child imports it once it is sandboxed.
"""
from .jail import Limits, SandboxFailure, SandboxUnavailable


def take_turns_with_the_child() -> None:
    """Call before torch is imported. The grader and the sandboxed child take turns, so
    OpenMP threads that spin while they wait (its default) would take the cores the other
    one needs: they sleep instead, here and, through the environment, in the child."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def overhead_seconds() -> float:
    """Seconds spent crossing to the sandboxed process and back (0.0 when nothing is isolated)."""
    import sys

    remote = sys.modules.get(__name__ + ".remote")
    return remote.overhead_seconds() if remote is not None else 0.0


__all__ = ["Limits", "SandboxFailure", "SandboxUnavailable", "overhead_seconds", "take_turns_with_the_child"]
