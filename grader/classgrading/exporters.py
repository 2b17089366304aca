"""Views of the result records for the places instructors grade.

- Gradescope: the autograder's results.json, as specified in Gradescope's "Autograder
  Specifications" (gradescope-autograders.readthedocs.io, "specs"): top-level `score`,
  `execution_time`, `output`, `tests`; each test has `name`, `number`, `score`,
  `max_score`, `status` ("passed"/"failed"), `output`, `visibility` ("visible",
  "hidden", "after_due_date", "after_published") and `extra_data`.
- GitHub Classroom: the runner output that education/autograding-grading-reporter reads
  (base64-encoded, from `<RUNNER>_RESULTS`): `version`, `status` ("pass"/"fail"/
  "error"), `max_score` and `tests`, each with `name`, `status`, `score`, `message`
  (the reporter's src/main.js, notify-classroom.js and aggregate-results.js). The points
  it sends to Classroom are the sum of the tests' `score`; its summary table counts
  passed tests instead, so a stage whose checks have unequal points shows a different
  percentage there.
- CSV: one row per learner, totals first, then each check's points.

    python -m grader.classgrading.exporters gradescope RECORDS.json [OUT]     results.json from `check --json`
    python -m grader.classgrading.exporters classroom RECORDS.json [--base64] the runner output (for $GITHUB_OUTPUT)
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import json
import os
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..results import ERROR, FAILED, PASSED, Record, isolation_summary, read_json, score

if TYPE_CHECKING:
    from .outcome import ExpectedCheck, Outcome
    from ..course import Stage

# Hidden checks' results reach learners once the instructor publishes the grades.
GRADESCOPE_VISIBILITY = {"public": "visible", "hidden": "after_published"}
CLASSROOM_STATUS = {PASSED: "pass", FAILED: "fail", ERROR: "error"}
EXPORTS = ("gradescope", "classroom")


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


def summary(records: list[Record], note: str = "") -> str:
    earned, possible = score(records)
    passed = sum(r.status == PASSED for r in records)
    counted = sum(r.counts for r in records)
    text = f"Score: {earned:g}/{possible:g} ({passed} of {counted} checks passed)."
    skipped = [r for r in records if not r.counts]
    if skipped:
        text += f" {len(skipped)} check(s) skipped and not counted: {skipped[0].message}"
    if note:
        text = note + "\n\n" + text
    graded = graded_files_of(records)
    if graded:
        text += "\nGraded: " + "; ".join(f"{f['path']} (sha256 {f['sha256'] or 'unreadable'})" for f in graded)
    return text


def graded_files_of(records: list[Record]) -> list[dict]:
    """The files the records say were graded (the same in every record of one run)."""
    return next((r.graded_files for r in records if r.graded_files), [])


def gradescope_results(records: list[Record], note: str = "", execution_time: float | None = None) -> dict:
    """Gradescope's results.json for one submission."""
    earned, _ = score(records)
    tests = []
    for number, r in enumerate(records, 1):
        test = {
            "name": r.title,
            "number": str(number),
            "score": _num(r.points_earned) if r.counts else 0,
            # A skipped check (no GPU here) is worth nothing either way.
            "max_score": _num(r.points_possible) if r.counts else 0,
            "output": r.message or "Passed.",
            "visibility": GRADESCOPE_VISIBILITY.get(r.visibility, "after_published"),
            "extra_data": {"check_id": r.check_id, "stage": r.stage, "grader_status": r.status},
        }
        if r.counts:
            test["status"] = "passed" if r.status == PASSED else "failed"
        tests.append(test)
    results = {
        "score": _num(earned),
        "output": summary(records, note),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    if graded_files_of(records):
        results["extra_data"] = {"graded_files": graded_files_of(records)}
    if execution_time is not None:
        results["execution_time"] = round(execution_time)
    return results


def classroom_results(records: list[Record], note: str = "") -> dict:
    """The runner output GitHub Classroom's grading reporter reads, for one submission."""
    counted = [r for r in records if r.counts]
    tests = [
        {
            "name": r.title,
            "status": CLASSROOM_STATUS[r.status],
            "score": _num(r.points_earned),
            "message": r.message or "Passed.",
            "test_code": f"python -m grader check {r.stage}  # {r.check_id}",
            "execution_time": f"{round(r.duration * 1000)}ms",
        }
        for r in counted
    ]
    if counted and all(r.status == ERROR for r in counted):
        status = "error"
    elif any(r.status != PASSED for r in counted):
        status = "fail"
    else:
        status = "pass"
    _, possible = score(records)
    return {"version": 1, "status": status, "message": summary(records, note), "max_score": _num(possible), "tests": tests}


def write_learner(out: Path, outcome: "Outcome", stage: "Stage", exports: Iterable[str] = ()) -> None:
    """The learner's exports, then their records (the `check --json` format, plus who, what
    happened and the fingerprint of what was graded). The records come last: they mark the
    learner as graded (`read_learner`)."""
    for kind in exports:
        if kind == "gradescope":
            _write_json(out / "gradescope" / outcome.learner / "results.json", gradescope_results(outcome.records, outcome.note, outcome.seconds))
        elif kind == "classroom":
            _write_json(out / "classroom" / f"{outcome.learner}.json", classroom_results(outcome.records, outcome.note))
        else:
            raise ValueError(f"unknown export {kind!r}")
    earned, possible = outcome.score
    payload = {
        "learner": outcome.learner,
        "stage": stage.id,
        "score": earned,
        "max_score": possible,
        "note": outcome.note,
        "seconds": outcome.seconds,
        "fingerprint": outcome.fingerprint,
        "isolation": outcome.isolation,
        "records": [asdict(r) for r in outcome.records],
    }
    _write_json(out / "records" / f"{outcome.learner}.json", payload)


def read_learner(out: Path, learner: str, stage: "Stage", expected: list["ExpectedCheck"], fingerprint: str):
    """The Outcome an earlier run wrote for this learner, if it graded the same files against
    the same checks; otherwise None (grade them)."""
    from .outcome import Outcome

    path = out / "records" / f"{learner}.json"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        records = [Record(**r) for r in payload["records"]]
        same = payload["stage"] == stage.id and payload["fingerprint"] == fingerprint
        checks = {r.check_id: float(r.points_possible) for r in records} == {c.check_id: c.points for c in expected}
        if not (same and checks and len(records) == len(expected)):
            return None
        return Outcome(learner, records, payload["note"], payload["seconds"], None, fingerprint, kept=True,
                       isolation=payload.get("isolation"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_scores_csv(path: Path, outcomes: list["Outcome"], expected: list["ExpectedCheck"]) -> None:
    """Totals, then one column per check (its points earned, empty when skipped)."""
    ids = [c.check_id for c in expected]
    with _atomic(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["learner", "score", "max_score", "checks_passed", "checks_counted", "graded", "note", "graded_files", "sandbox", *ids])
        for o in sorted(outcomes, key=lambda o: o.learner):
            earned, possible = o.score
            by_id = {r.check_id: r for r in o.records}
            points = [(f"{by_id[i].points_earned:g}" if by_id[i].counts else "") if i in by_id else "" for i in ids]
            passed = sum(r.status == PASSED for r in o.records)
            counted = sum(r.counts for r in o.records)
            graded = "no" if o.note else "yes"
            files = "; ".join(f"{f['path']} sha256:{f['sha256'] or 'unreadable'}" for f in graded_files_of(o.records))
            sandbox = isolation_summary(o.isolation) if o.isolation else "learner code did not run"
            writer.writerow([o.learner, f"{earned:g}", f"{possible:g}", passed, counted, graded, reason(o.records, o.note), files, sandbox, *points])


def reason(records: list[Record], note: str = "") -> str:
    """One line for scores.csv that says why a learner has the score they have."""
    if note:
        return note.splitlines()[0]
    counted = [r for r in records if r.counts]
    missed = [r for r in counted if r.status != PASSED]
    if not counted:
        return "No check could run here; nothing was counted." if records else "No checks."
    if not missed:
        return "Every check passed."
    messages = {r.message for r in missed}
    first = (missed[0].message.splitlines() or [""])[0]
    if len(missed) == len(counted) and len(messages) == 1:
        return first  # one cause for every check: the code did not import, or was not graded
    line = f"{len(missed)} of {len(counted)} checks did not pass; first, {missed[0].title}: {first}"
    return line if len(line) <= 300 else line[:297] + "..."


def _write_json(path: Path, payload: dict) -> None:
    with _atomic(path) as f:
        f.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def _atomic(path: Path, newline: str | None = None):
    """Write a text file whole or not at all: a run killed while writing leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        with open(partial, "w", newline=newline, encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.classgrading.exporters", description="Turn `check --json` records into another format.")
    parser.add_argument("format", choices=EXPORTS)
    parser.add_argument("records", type=Path, help="a file written by `python -m grader check STAGE --json FILE`")
    parser.add_argument("out", type=Path, nargs="?", help="where to write (default: standard output)")
    parser.add_argument("--base64", action="store_true", help="classroom: print `result=<base64>` for $GITHUB_OUTPUT")
    args = parser.parse_args(argv)
    try:
        records = read_json(args.records)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: cannot read records from {args.records}: {exc}", file=sys.stderr)
        return 2
    payload = gradescope_results(records) if args.format == "gradescope" else classroom_results(records)
    text = json.dumps(payload, ensure_ascii=False)
    if args.base64:
        text = "result=" + base64.b64encode(text.encode("utf-8")).decode("ascii")
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
