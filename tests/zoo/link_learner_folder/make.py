"""Intake attack: the learner's whole folder is a link to a classmate's folder."""


def make(learner, places):
    learner.symlink_to(places["victim"], target_is_directory=True)
