"""selftest over every available stage: the suites pass the reference, fail the stubs, catch every mutant."""
from grader.cli import main


def test_selftest_every_available_stage(capsys):
    code = main(["selftest"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "FAIL" not in out
    assert "selftest passed" in out
