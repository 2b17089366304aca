"""Odd file: honest code, beside a named pipe that a copy or a fingerprint would block on."""
import os


def make(learner, places):
    learner.mkdir()
    (learner / "bigram.py").write_text(places["solution"])
    os.mkfifo(learner / "data.txt")
