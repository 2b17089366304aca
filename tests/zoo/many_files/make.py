"""Odd file: honest code, beside 5,000 empty files (a copy or fingerprint without a bound
would take them all)."""


def make(learner, places):
    learner.mkdir()
    (learner / "bigram.py").write_text(places["solution"])
    junk = learner / "junk"
    junk.mkdir()
    for i in range(5000):
        (junk / f"{i}.txt").touch()
