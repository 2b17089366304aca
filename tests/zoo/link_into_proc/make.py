"""Intake attack: honest code, beside a link into /proc (reading it would never end, or read
the grader's own memory)."""


def make(learner, places):
    learner.mkdir()
    (learner / "bigram.py").write_text(places["solution"])
    (learner / "memory.bin").symlink_to("/proc/self/mem")
