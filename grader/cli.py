"""python -m grader list | check | selftest | release | data"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import checking
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
    checking.add_arguments(check)

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
    return checking.run_command(COMMANDS[args.command], args)


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


def cmd_selftest(args) -> int:
    course = load_course()
    if course.is_release:
        raise CourseError("selftest needs the solutions and the mutants, which a student release does not have.")
    from .selftest import selftest  # the mutants it imports are not in a student release

    stages = [course.available_stage(s) for s in args.stages] or [s for s in course.stages if s.available]
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
    from .classgrading.batch import command

    course = load_course()
    return command(course, course.available_stage(args.stage), args)


def cmd_gradescope(args) -> int:
    from .classgrading.gradescope import gradescope_command

    course = load_course()
    return gradescope_command(course, course.available_stage(args.stage), args)


def cmd_nbgrader(args) -> int:
    from .classgrading.nbgrader_course import command

    course = load_course()
    names = (args.stages or []) if args.nb_action == "init" else [args.stage]
    return command(course, [course.available_stage(s) for s in names], args)


COMMANDS = {"list": cmd_list, "check": checking.check, "selftest": cmd_selftest, "release": cmd_release, "data": cmd_data}
COMMANDS.update(train=cmd_train, grade=cmd_grade, gradescope=cmd_gradescope, nbgrader=cmd_nbgrader)


def cmd_gpucheck(args) -> int:
    from .gpucheck import command

    return command(load_course(), args.smoke, args.out)


COMMANDS.update(gpucheck=cmd_gpucheck)


def cmd_report(args) -> int:
    from .classgrading.classreport import command

    return command(args)


COMMANDS.update(report=cmd_report)
