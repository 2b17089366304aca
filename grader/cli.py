"""python -m grader list | check | selftest | release | data"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from .course import CourseError, Stage, load_course

USAGE_EXAMPLES = """examples:
  python -m grader list
  python -m grader check 01_bpe
  python -m grader check 01_bpe --impl solutions --json results.json
  python -m grader check 02_bigram --impl submissions/ada --isolate --json ada.json
  python -m grader selftest 01_bpe 02_bigram
  python -m grader release --check
  python -m grader data fetch tinyshakespeare
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grader",
        description="The ScratchGPT autograder.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and what your code printed")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="the stages, their points and status")

    check = sub.add_parser("check", help="run one stage's checks")
    check.add_argument("stage", help="a stage: its id (05_attention), its number (5) or its name (attention)")
    check.add_argument("--impl", default="exercises", help="exercises (default), solutions, or a folder")
    check.add_argument(
        "--deps",
        choices=["own", "reference"],
        help="earlier stages from the same place as the stage (own) or from solutions/ (reference); "
        "default: own for exercises, reference otherwise",
    )
    check.add_argument("--json", type=Path, metavar="FILE", help="also write the result records to FILE")
    check.add_argument(
        "--isolate",
        action="store_true",
        help="grading mode: run the code under test in a sandboxed child process (bubblewrap where available) "
        "with the stage's limits, and judge it from outside",
    )
    check.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)

    selftest = sub.add_parser("selftest", help="prove the suites: solutions pass, stubs score 0, mutants are caught")
    selftest.add_argument("stages", nargs="*", help="stage ids (default: every available stage)")
    selftest.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)

    release = sub.add_parser("release", help="build the student release, or check that exercises/ is in sync")
    release.add_argument("outdir", nargs="?", type=Path)
    release.add_argument("--check", action="store_true", help="only check that exercises/ is what solutions/ generates")
    release.add_argument("--write-exercises", action="store_true", help="regenerate exercises/ from solutions/ (course authors)")

    data = sub.add_parser("data", help="the course's datasets")
    data.add_argument("action", choices=["list", "fetch", "verify"])
    data.add_argument("name", nargs="?")

    train = sub.add_parser("train", help="train your GPT (stage 07) on real text: loss curve and samples")
    from .train import add_arguments as add_train_arguments

    add_train_arguments(train)

    grade = sub.add_parser("grade", help="grade a class: a folder with one folder per learner")
    grade.add_argument("submissions", type=Path, help="the folder that holds one folder per learner")
    grade.add_argument("--stage", required=True, help="a stage id, such as 02_bigram")
    grade.add_argument("--out", type=Path, required=True, help="where the records, scores.csv and exports go")
    grade.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="learners graded at once (default: one per core)")
    grade.add_argument("--no-isolate", action="store_true",
                       help="run learners' code in the grading process, not in a sandbox: faster, for code you trust")
    grade.add_argument("--timeout", type=float, help="seconds before one learner's grading is stopped "
                       "(default: the stage's time_limit + check_time_limit + 30)")
    grade.add_argument("--export", action="append", choices=["gradescope", "classroom"], default=[],
                       help="also write each learner's Gradescope results.json or GitHub Classroom runner output")

    report = sub.add_parser("report", help="a class report (one HTML page) from grade's records or Gradescope's results")
    report.add_argument("records", type=Path, help="grade's OUT/records, or a folder of <learner>/results.json")
    report.add_argument("--out", type=Path, help="the page to write (default: report.html beside RECORDS)")

    gradescope = sub.add_parser("gradescope", help="build a stage's Gradescope autograder zip")
    gradescope.add_argument("stage")
    gradescope.add_argument("--zip", type=Path, dest="zip_path", help="the zip to write (default: gradescope-STAGE.zip)")
    gradescope.add_argument("--run", type=Path, metavar="SUBMISSION", help="inside Gradescope: grade this submission folder")
    gradescope.add_argument("--results", type=Path, help="with --run: where results.json goes")

    nbgrader = sub.add_parser("nbgrader", help="grade with nbgrader: make the course directory, prepare submissions")
    nbgrader_sub = nbgrader.add_subparsers(dest="nb_action", required=True)
    nb_init = nbgrader_sub.add_parser("init", help="write nbgrader_config.py and source/<stage>/ into COURSE_DIR")
    nb_init.add_argument("course_dir", type=Path)
    nb_init.add_argument("--stages", nargs="+", help="stage ids (default: every available stage)")
    nb_add = nbgrader_sub.add_parser("add-notebooks", help="give each collected submission the grading notebook it lacks")
    nb_add.add_argument("course_dir", type=Path)
    nb_add.add_argument("stage")

    gpucheck = sub.add_parser("gpucheck", help="course authors: every GPU check and the GPT-2 benchmark on this GPU, "
                              "in one markdown report")
    gpucheck.add_argument("--smoke", action="store_true",
                          help="the same pipeline on the CPU at tiny sizes: a test of the code, not a measurement")
    gpucheck.add_argument("--out", type=Path, help="the report (default: benchmarks/gpu_report.md; "
                          "runs/gpucheck_smoke.md with --smoke)")

    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
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


def cmd_list(args) -> int:
    course = load_course()
    print(f"{course.name}: {course.title}\n")
    for stage in course.stages:
        print(f"  {stage.id:<13} {stage.title:<66} {stage.points:>3} pts  {_status(course, stage)}")
    return 0


def _status(course, stage: Stage) -> str:
    from .release import unwritten_parts

    if not stage.available:
        return "not available yet"
    files = [course.root / "exercises" / stage.id / f for f in stage.files]
    if not all(p.is_file() for p in files):
        return "files missing"
    left = len(unwritten_parts(files))
    return f"{left} part(s) left to implement" if left else "all parts written"


def find_stage(course, text: str) -> Stage:
    """The stage a learner means: `05_attention`, `05`, `5` and `attention` (any case) are all
    05_attention. Anything else gets the course's answer, with a "did you mean" when one is close."""
    key = text.strip().lower()
    number, _, topic = key.partition("_") if key[:1].isdigit() else ("", "", key)
    for stage in course.stages:
        stage_number, stage_topic = stage.id.split("_", 1)
        same_number = number.isdigit() and int(number) == int(stage_number)
        if key == stage.id or (same_number and topic in ("", stage_topic)) or (not number and topic == stage_topic):
            return stage
    return course.stage(text)


def available_stage(course, stage_id: str) -> Stage:
    stage = find_stage(course, stage_id)
    if not stage.available:
        raise CourseError(f"Stage {stage.id} ({stage.title}) is not available yet. Run `python -m grader list` to see what is.")
    return stage


def cmd_check(args) -> int:
    args.started = time.perf_counter()  # the report's total time counts from here
    course = load_course()
    stage = available_stage(course, args.stage)
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


def cmd_selftest(args) -> int:
    course = load_course()
    if course.is_release:
        raise CourseError("selftest needs the solutions and the mutants, which a student release does not have.")
    from .selftest import selftest  # the mutants it imports are not in a student release

    stages = [available_stage(course, s) for s in args.stages] or [s for s in course.stages if s.available]
    return 0 if selftest(course, stages, verbose=args.verbose) else 1


def cmd_release(args) -> int:
    from .release import build_release, check_in_sync, write_exercises

    course = load_course()
    if args.write_exercises:
        if course.is_release:
            raise CourseError("A student release has no solutions/ to generate exercises from.")
        for path in write_exercises(course):
            print(f"wrote {path}")
        return 0
    if args.check:
        problems = check_in_sync(course)
        for problem in problems:
            print(problem)
        if not problems:
            print("exercises/ is in sync with solutions/.")
        return 1 if problems else 0
    if args.outdir is None:
        raise CourseError("release needs an output folder (or --check).")
    build_release(course, args.outdir)
    print(f"Student release written to {args.outdir}")
    return 0


def cmd_data(args) -> int:
    from . import data

    return data.command(args.action, args.name)


def cmd_train(args) -> int:
    from .train import command

    return command(args)


def cmd_grade(args) -> int:
    from .batch import command

    course = load_course()
    return command(course, available_stage(course, args.stage), args)


def cmd_gradescope(args) -> int:
    from .exporters import gradescope_command

    course = load_course()
    return gradescope_command(course, available_stage(course, args.stage), args)


def cmd_nbgrader(args) -> int:
    from .nbgrader_course import command

    course = load_course()
    names = (args.stages or []) if args.nb_action == "init" else [args.stage]
    return command(course, [available_stage(course, s) for s in names], args)


COMMANDS = {"list": cmd_list, "check": cmd_check, "selftest": cmd_selftest, "release": cmd_release, "data": cmd_data}
COMMANDS.update(train=cmd_train, grade=cmd_grade, gradescope=cmd_gradescope, nbgrader=cmd_nbgrader)


def cmd_gpucheck(args) -> int:
    from .gpucheck import command

    return command(load_course(), args.smoke, args.out)


COMMANDS.update(gpucheck=cmd_gpucheck)


def cmd_report(args) -> int:
    from .classreport import command

    return command(args)


COMMANDS.update(report=cmd_report)
