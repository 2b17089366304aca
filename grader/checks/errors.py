"""Reading a learner's exception: the line of their code that raised it, for hints that fit it."""
from __future__ import annotations

import re

from ..handle import LearnerError

# One frame of a formatted traceback and, when the source could be read, its code line.
_FRAME = re.compile(r'^  File "(?P<file>[^"\n]*)", line (?P<line>\d+), in [^\n]*\n(?:    (?P<code>[^\n]*))?', re.M)
_WHERE = re.compile(r"^(?P<file>.+), line (?P<line>\d+), in ")


def failing_line(exc: LearnerError) -> str:
    """The source line of the learner's code where `exc` was raised ('' when unknown).

    `exc.where` names the innermost frame in the learner's files; the line itself comes from
    the traceback (in isolated mode, the text the learner's process sent). It only ever picks
    a hint, never a verdict."""
    where = _WHERE.match(exc.where or "")
    if not where:
        return ""
    try:
        text = exc.traceback()
    except Exception:  # noqa: BLE001 - an exception whose formatting fails gives no line, not a crash
        return ""
    code = ""
    for frame in _FRAME.finditer(text):
        name = re.split(r"[\\/]", frame["file"])[-1]
        if name == where["file"] and frame["line"] == where["line"] and frame["code"]:
            code = frame["code"].strip()
    return code
