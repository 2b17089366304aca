"""Odd file: the stage file is a named pipe (opening it to read would block forever)."""
import os


def make(learner, places):
    learner.mkdir()
    os.mkfifo(learner / "bigram.py")
