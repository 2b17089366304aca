"""`python -m grader check`: one stage's checks on one implementation, reported as they end.

The command line calls it, and so does class grading (grader/classgrading/batch.py), whose
forked grading processes run exactly what a `check --isolate --json` would.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from .course import CourseError, Stage, load_course


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", help="a stage: its id (05_attention), its number (5) or its name (attention)")
    parser.add_argument("--impl", default="exercises", help="exercises (default), solutions, or a folder")
    parser.add_argument(
        "--deps",
        choices=["own", "reference"],
        help="earlier stages from the same place as the stage (own) or from solutions/ (reference); "
        "default: own for exercises, reference otherwise",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the result records to FILE")
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="grading mode: run the code under test in a sandboxed child process (bubblewrap where available) "
        "with the stage's limits, and judge it from outside",
    )
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)


def main(argv: list[str]) -> int:
    """`check`'s arguments (without the word check): what a forked grading process runs."""
    parser = argparse.ArgumentParser(prog="python -m grader check")
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.verbose = getattr(args, "verbose", False)
    return run_command(check, args)


def run_command(command, args) -> int:
    """Run one command; its exit status, and never a bare traceback for a learner."""
    try:
        return command(args)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: nothing left to say
        sys.stderr.close()
        return 1
    except Exception as exc:  # noqa: BLE001 - never a bare traceback for a learner
        if args.verbose:
            traceback.print_exc()
        print(f"error: the grader failed unexpectedly ({type(exc).__name__}: {exc}). Run again with -v for details.", file=sys.stderr)
        return 3


def check(args) -> int:
    args.started = time.perf_counter()  # the report's total time counts from here
    course = load_course()
    stage = course.available_stage(args.stage)
    if not args.isolate:
        return _check(args, course, stage, None)
    # Start the sandboxed child first: it imports torch while this process loads the suites.
    from .sandbox import take_turns_with_the_child
    from .sandbox.jail import SandboxUnavailable, start_sandbox  # no torch yet

    take_turns_with_the_child()
    sandbox = start_sandbox(course, stage, background=True)
    try:
        return _check(args, course, stage, sandbox)
    except SandboxUnavailable as exc:
        raise CourseError(str(exc)) from None
    finally:
        sandbox.close()


def _check(args, course, stage: Stage, sandbox) -> int:
    from .handle import resolve
    from .report import LiveReport
    from .results import all_passed, write_json
    from .runner import run_stage

    deps = args.deps or ("own" if args.impl == "exercises" else "reference")
    impl = resolve(course, stage, args.impl, deps)
    if sandbox is not None:
        from .sandbox.remote import RemoteImplementation

        impl = RemoteImplementation(impl, course, sandbox)
    from .release import unwritten_parts

    # Each check's line appears as soon as it ends (the same in-process and isolated).
    report = LiveReport(stage, impl.label, started=args.started)
    report.start()
    try:
        records = run_stage(course, stage, impl, verbose=args.verbose, progress=report)
    finally:
        report.close()
    hidden_not_run = course.hidden.get(stage.id, 0)
    later = course.stages[course.stages.index(stage) + 1 :]
    report.finish(records, hidden_not_run, unwritten_parts(impl.files), later[0].id if later else None)
    if args.json:
        write_json(records, args.json, getattr(impl, "isolation", None))
    return 0 if all_passed(records) else 1
