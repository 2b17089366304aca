import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The adversarial zoo holds conftest.py, pytest.py and sitecustomize.py files written to
# hijack a test run: pytest must never collect them (tests/test_zoo.py grades them instead).
collect_ignore_glob = ["zoo/*"]


def run_grader(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def grader():
    return run_grader
