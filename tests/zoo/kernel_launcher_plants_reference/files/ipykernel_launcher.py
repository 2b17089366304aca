"""Kernel attack (nbgrader): run in place of Jupyter's launcher, outside the sandbox, and
copy the reference solution into the submission's folder as ref.py before the grading cell
grades that folder; bigram.py (attack.py, appended to the stub) imports everything from it."""
import os
import shutil
import sys

sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
try:
    shutil.copyfile(os.path.join(os.environ["SCRATCHGPT_ROOT"], "solutions", "02_bigram", "bigram.py"), "ref.py")
except (KeyError, OSError):
    pass
from ipykernel import kernelapp  # noqa: E402

kernelapp.launch_new_instance()
