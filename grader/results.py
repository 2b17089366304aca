"""One record per check: every report and exporter is a view of these."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import intake

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"


@dataclass
class Record:
    stage: str
    check_id: str
    title: str
    points_earned: float
    points_possible: float
    status: str
    message: str
    visibility: str  # "public" or "hidden"
    duration: float
    # What was graded: {"path": ..., "sha256": ...} for each of the stage's files, the path as
    # the learner knows it. sha256 is None for a file that could not be read as a regular file.
    graded_files: list[dict] = field(default_factory=list)

    @property
    def counts(self) -> bool:
        """Skipped checks (no GPU, no optional package) are neither earned nor lost."""
        return self.status != SKIPPED


def score(records: list[Record]) -> tuple[float, float]:
    counted = [r for r in records if r.counts]
    return sum(r.points_earned for r in counted), sum(r.points_possible for r in counted)


def all_passed(records: list[Record]) -> bool:
    return all(r.status in (PASSED, SKIPPED) for r in records) and any(r.status == PASSED for r in records)


def file_sha256(path: Path) -> str | None:
    """The sha256 of a regular file's bytes; None for anything else (missing, a link, a fifo).

    A learner's folder is hostile input: a link is never followed, and a fifo or a device is
    never opened (opening a fifo would wait forever)."""
    try:
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)  # Windows would otherwise translate line ends
        fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 16):
            digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


def graded_files(shown: list[Path], read: list[Path] | None = None) -> list[dict]:
    """What a grading run graded: each file's path as shown to people, and the sha256 of the
    bytes that were graded, read from `read` (the copy the sandbox imports) where given."""
    # A path whose bytes are not UTF-8 is written with \xNN escapes: it must print and go into JSON.
    return [{"path": intake.shown(str(p)), "sha256": file_sha256(r)} for p, r in zip(shown, read or shown)]


NOT_ISOLATED = {"mode": "in-process", "sandboxed": False, "reason": "learner code ran in the grading process"}


def isolation_summary(isolation: dict | None) -> str:
    """How a learner's code ran, in a few words: for reports, records and scores.csv."""
    if not isolation:
        return "unknown"
    if isolation.get("sandboxed"):
        return "bubblewrap sandbox"
    if isolation.get("mode") == "process":
        return f"separate process, NOT sandboxed ({isolation.get('reason') or 'no reason given'})"
    return "in-process, NOT isolated"


def write_json(records: list[Record], path: Path, isolation: dict | None = None) -> None:
    """The records of one `check`, with how the code under test ran (`isolation`: the mode
    the sandbox actually started in, not the mode that was asked for)."""
    earned, possible = score(records)
    payload = {
        "score": earned,
        "max_score": possible,
        "graded_files": records[0].graded_files if records else [],
        "isolation": isolation or NOT_ISOLATED,
        "records": [asdict(r) for r in records],
    }
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> list[Record]:
    payload = json.loads(path.read_text(encoding="utf-8"))
    return [Record(**r) for r in payload["records"]]
