"""Prove the suites: the reference earns every point, the stubs earn none, every mutant is caught
and no check crashes on it."""
from __future__ import annotations

import tempfile
from pathlib import Path

from .course import Course, Stage
from .handle import resolve
from .mutants import load_mutants, write_mutant
from .report import diagnosis
from .results import ERROR, FAILED, PASSED, SKIPPED, score
from .runner import GRADER_BUG, run_stage, stage_checks


def selftest(course: Course, stages: list[Stage], verbose: bool = False) -> bool:
    ok = True
    for stage in stages:
        print(f"== {stage.id}  {stage.title}")
        ok &= _points_add_up(stage)
        ok &= _reference_passes(course, stage, verbose)
        ok &= _stubs_score_zero(course, stage, verbose)
        ok &= _mutants_caught(course, stage, verbose)
        print()
    print("selftest passed" if ok else "selftest FAILED")
    return ok


def _report(good: bool, text: str) -> bool:
    print(f"  {'ok  ' if good else 'FAIL'} {text}")
    return good


def _points_add_up(stage: Stage) -> bool:
    checks = stage_checks(stage)
    total = sum(c.points for c in checks)
    ids = [c.id for c in checks]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    good = total == stage.points and not duplicated
    detail = f"; check ids used twice: {duplicated}" if duplicated else ""
    return _report(good, f"{len(checks)} checks worth {total:g} points; course.toml says {stage.points}{detail}")


def _reference_passes(course: Course, stage: Stage, verbose: bool) -> bool:
    records = run_stage(course, stage, resolve(course, stage, "solutions", "reference"), verbose)
    earned, possible = score(records)
    bad = [r for r in records if r.status not in (PASSED, SKIPPED)]
    skipped = [r for r in records if r.status == SKIPPED]
    good = not bad and earned == possible
    note = f" ({len(skipped)} skipped: {', '.join(f'{r.check_id}: {r.message}' for r in skipped)})" if skipped else ""
    _report(good, f"solutions earn {earned:g}/{possible:g}{note}")
    for r in bad:
        print(f"       {r.check_id}: {r.status}: {r.message}")
    return good


def _stubs_score_zero(course: Course, stage: Stage, verbose: bool) -> bool:
    records = run_stage(course, stage, resolve(course, stage, "exercises", "reference"), verbose)
    earned, _ = score(records)
    unclear = [r for r in records if r.status != SKIPPED and "Not implemented yet" not in r.message]
    good = earned == 0 and not unclear
    _report(good, f"stubs earn {earned:g} points, every check says what is not implemented")
    for r in unclear:
        print(f"       {r.check_id}: {r.status}: {r.message.splitlines()[0] if r.message else '(no message)'}")
    return good


def _mutants_caught(course: Course, stage: Stage, verbose: bool) -> bool:
    mutants = load_mutants(stage)
    checks = {c.id: c for c in stage_checks(stage)}
    ok = _report(len(mutants) >= 8, f"{len(mutants)} mutants registered (at least 8 wanted)")
    named_first = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        for mutant in mutants:
            folder = Path(tmp) / mutant.name / stage.id
            write_mutant(mutant, course.root / "solutions" / stage.id, folder)
            if mutant.caught_by not in checks:
                ok &= _report(False, f"{mutant.name}: names check {mutant.caught_by!r}, which {stage.id} does not have")
                continue
            # The whole suite, public and hidden: no check may crash on a buggy implementation
            # (the inputs hypothesis shrinks a failure to included), or the learner reads
            # "grader bug" instead of their own mistake.
            records = run_stage(course, stage, resolve(course, stage, str(folder.parent), "reference"), verbose)
            record = next(r for r in records if r.check_id == mutant.caught_by)
            caught = record.status in (FAILED, ERROR) and mutant.message.lower() in record.message.lower()
            first = record.message.splitlines()[0] if record.message else "(no message)"
            ok &= _report(caught, f"{mutant.name} ({mutant.bug}): {record.check_id} {record.status}: {first}")
            if not caught and record.status in (FAILED, ERROR):
                print(f"       the message should contain {mutant.message!r}:\n{record.message}")
            for crashed in (r for r in records if GRADER_BUG in r.message):
                ok &= _report(False, f"{mutant.name}: the check {crashed.check_id} crashed: {crashed.message}")
            if not _named_by_fix_first(records, mutant):
                named_first.append(mutant.name)
    # What the learner reads first: the report's "Fix first" line quotes the first failing check.
    print(f"  info {len(mutants) - len(named_first)} of {len(mutants)} mutants named by Fix first"
          + (f"; not: {', '.join(named_first)}" if named_first else ""))
    return ok


def _named_by_fix_first(records: list, mutant) -> bool:
    """Does the first failing check's diagnosis, which "Fix first" quotes, name the mutant's bug?"""
    first = next((r for r in records if r.status in (FAILED, ERROR)), None)
    return first is not None and mutant.message.lower() in diagnosis(first.message).lower()
