"""The terminal report: a learner reads it in ten seconds and knows what to fix first."""
from __future__ import annotations

import sys
import textwrap

from .course import Stage
from .results import ERROR, FAILED, PASSED, SKIPPED, Record, score


def _marks() -> dict[str, str]:
    fancy = {PASSED: "✓", FAILED: "✗", ERROR: "!", SKIPPED: "-"}
    try:
        "".join(fancy.values()).encode(sys.stdout.encoding or "ascii")
        return fancy
    except (UnicodeEncodeError, LookupError):
        return {PASSED: "+", FAILED: "x", ERROR: "!", SKIPPED: "-"}


def render(
    stage: Stage,
    records: list[Record],
    label: str,
    hidden_not_run: int = 0,
    unwritten: list[str] = (),
    next_stage: str | None = None,
) -> str:
    marks = _marks()
    earned, possible = score(records)
    lines = [f"{stage.id}  {stage.title}  [{label}]", ""]
    width = max((len(r.title) for r in records), default=10)
    for r in records:
        hidden = " (hidden)" if r.visibility == "hidden" else ""
        points = "skipped" if r.status == SKIPPED else f"{_num(r.points_earned)}/{_num(r.points_possible)}"
        lines.append(f"  {marks[r.status]} {r.title:<{width}}  {points:>7}{hidden}")
        if r.status != PASSED and r.message:
            lines.extend(_indent(r.message))
    lines.append("")
    lines.append(f"Score: {_num(earned)}/{_num(possible)}")
    skipped = [r for r in records if r.status == SKIPPED]
    if skipped:
        lines.append(f"{len(skipped)} check(s) skipped here and not counted: {skipped[0].message}")
    if hidden_not_run:
        lines.append(
            f"{hidden_not_run} hidden check(s) exist for this stage; they run when your instructor grades it."
        )
    lines.extend(_fix_first(records, unwritten, next_stage))
    return "\n".join(lines)


def _fix_first(records: list[Record], unwritten: list[str], next_stage: str | None) -> list[str]:
    problems = [r for r in records if r.status in (FAILED, ERROR)]
    if not problems:
        if not records:
            return []
        if next_stage is None:
            return ["Every check passed, and that was the last stage: the end of its handout says where to go from here."]
        return [f"Every check passed. On to {next_stage}!"]
    todo = [r for r in problems if r.message.startswith("Not implemented yet")]
    left = ["", f"Still to implement ({len(unwritten)}): {', '.join(unwritten)}."] if unwritten else []
    if len(todo) == len(problems):
        return left
    first = next(r for r in problems if not r.message.startswith("Not implemented yet"))
    return ["", f"Fix first: {first.title}: {first.message.splitlines()[0]}"] + left[1:]


def _indent(message: str) -> list[str]:
    out = []
    for line in message.splitlines():
        # Grids and code keep their layout; prose is wrapped.
        if line.startswith((" ", "output ")) or len(line) <= 96:
            out.append("      " + line)
        else:
            out.extend(textwrap.wrap(line, 96, initial_indent="      ", subsequent_indent="      "))
    return out


def _num(x: float) -> str:
    return f"{x:g}"
