"""Odd file: honest code, beside a file whose name is not valid UTF-8 (records, CSV and
messages must still be written)."""
import os


def make(learner, places):
    learner.mkdir()
    (learner / "bigram.py").write_text(places["solution"])
    with open(os.fsencode(learner) + b"/notes-caf\xe9.py", "w") as f:
        f.write("x = 1\n")
