"""Intake attack: the stage file is the learner's own (the stub), but it imports every name
of a helper module that is a link to a file outside the learner's folder (the reference)."""


def make(learner, places):
    learner.mkdir()
    (learner / "bigram.py").write_text(places["stub"] + "\n\nfrom helper import *  # noqa: F401,F403\n")
    (learner / "helper.py").symlink_to(places["repo"] / "solutions" / "02_bigram" / "bigram.py")
