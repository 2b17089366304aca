"""Intake attack: the stage folder is a link to a classmate's stage folder."""


def make(learner, places):
    learner.mkdir()
    (learner / "02_bigram").symlink_to(places["victim"] / "02_bigram", target_is_directory=True)
