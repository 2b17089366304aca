"""The ScratchGPT autograder. Suites import `check` from here and helpers from `grader.checks`."""
from .registry import check

__all__ = ["check"]
