"""Kernel attack (nbgrader): a package named like the course's grader, in the submission's
folder. The grading cell imports `grader.classgrading.nbgrader_course.notebook_points`; if this one were
found first it would print the hidden suite and give the cell its full points."""
import os


def notebook_points(stage_id, check_ids, points):
    try:
        with open(os.path.join(os.environ.get("SCRATCHGPT_ROOT", "/nonexistent"), "grader", "suites", stage_id, "hidden.py")) as f:
            print(f.read())
    except OSError:
        pass
    return points
