"""Intake attack: the stage file is a link to the reference solution in the course folder."""


def make(learner, places):
    learner.mkdir()
    (learner / "bigram.py").symlink_to(places["repo"] / "solutions" / "02_bigram" / "bigram.py")
