"""Odd file: honest code, beside folders nested 200 levels deep (a recursive walk or copy
would hit Python's recursion limit or the path length limit)."""
import os


def make(learner, places):
    learner.mkdir()
    (learner / "bigram.py").write_text(places["solution"])
    fd = os.open(learner, os.O_RDONLY)
    try:
        for _ in range(200):  # one level at a time: the whole path is longer than PATH_MAX
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)
