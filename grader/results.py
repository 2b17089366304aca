"""One record per check: every report and exporter is a view of these."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

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

    @property
    def counts(self) -> bool:
        """Skipped checks (no GPU, no optional package) are neither earned nor lost."""
        return self.status != SKIPPED


def score(records: list[Record]) -> tuple[float, float]:
    counted = [r for r in records if r.counts]
    return sum(r.points_earned for r in counted), sum(r.points_possible for r in counted)


def all_passed(records: list[Record]) -> bool:
    return all(r.status in (PASSED, SKIPPED) for r in records) and any(r.status == PASSED for r in records)


def write_json(records: list[Record], path: Path) -> None:
    earned, possible = score(records)
    payload = {
        "score": earned,
        "max_score": possible,
        "records": [asdict(r) for r in records],
    }
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> list[Record]:
    payload = json.loads(path.read_text(encoding="utf-8"))
    return [Record(**r) for r in payload["records"]]
