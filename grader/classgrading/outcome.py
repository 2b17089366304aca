"""One learner's result in class grading, and what each check is worth before it runs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..course import Stage
from ..results import ERROR, Record, score


@dataclass(frozen=True)
class ExpectedCheck:
    """What a check is worth, known without running it: enough to write its error record."""

    check_id: str
    title: str
    points: float
    visibility: str


@dataclass
class Outcome:
    """One learner's result: the records, and a note when the grader could not finish."""

    learner: str
    records: list[Record]
    note: str = ""  # empty when the grader ran to the end and its records were read
    seconds: float = 0.0
    folder: Path | None = None
    fingerprint: str = ""  # what was graded (intake.fingerprint), when a class is graded
    kept: bool = False  # read back from an earlier run's records, not graded now
    # How the learner's code ran: what the grading process found when it started the
    # sandbox (results.write_json), or, without --isolate, what the parent knows it did.
    isolation: dict | None = None
    interrupted: bool = False  # the run was stopped while this learner was graded: grade again

    @property
    def score(self) -> tuple[float, float]:
        return score(self.records)


def expected_checks(stage: Stage) -> list[ExpectedCheck]:
    """The stage's checks from its suites (imports torch and the suites)."""
    from ..runner import stage_checks

    return [ExpectedCheck(c.id, c.title, float(c.points), c.visibility) for c in stage_checks(stage)]


def error_records(stage: Stage, expected: Iterable[ExpectedCheck], message: str) -> list[Record]:
    return [Record(stage.id, c.check_id, c.title, 0, c.points, ERROR, message, c.visibility, 0.0) for c in expected]
