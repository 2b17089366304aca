"""Set up the course and run it: the README's two commands.

    python course.py check 01_bpe     set up (once), then check your code for a stage
    python course.py test             set up (once, with test tools), then run the project's tests

Set-up makes a virtual environment in .venv that can still see the packages of the Python
you run this with, so a torch you already have (a CUDA build, say) is used as it is. Only
when no torch is importable does it install torch==2.13.0. Running it again installs
nothing new unless pyproject.toml changed.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
TORCH_PIN = "torch==2.13.0"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(*args: str) -> None:
    subprocess.run(args, check=True, cwd=ROOT)


def has_module(python: Path, module: str) -> bool:
    return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0


def set_up(extras: str) -> Path:
    if sys.version_info < (3, 10):
        sys.exit(f"ScratchGPT needs Python 3.10 or newer; this is {sys.version.split()[0]}.")
    if extras:  # tests and instructors: graded code runs in a bubblewrap sandbox where there is one
        ensure_bubblewrap()
    python = venv_python()
    if not python.exists():
        print(f"Creating {VENV.name}/ (it can see this Python's packages, so your torch is reused) ...")
        venv.EnvBuilder(system_site_packages=True, with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras or 'base'}"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if not has_module(python, "torch"):
        print(f"No torch found; installing {TORCH_PIN} ...")
        run(*pip, TORCH_PIN)
    print("Installing the course's packages ...")
    run(*pip, "-e", f".[{extras}]" if extras else ".")
    write_exercise_paths(python)
    stamp.write_text(wanted)
    return python


def ensure_bubblewrap() -> None:
    """Best effort: install bubblewrap, the sandbox of isolated grading (`check --isolate`),
    when it is missing and this is root on Debian or Ubuntu. Never fails the set-up: without
    it, grading still isolates learner code in its own process and says loudly that it is
    not sandboxed."""
    import shutil

    if shutil.which("bwrap") or os.name != "posix" or os.geteuid() != 0 or not Path("/etc/debian_version").exists():
        return
    print("Installing bubblewrap (the sandbox for grading) ...")
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "bubblewrap"]):
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"Could not install bubblewrap ({exc}); grading will run without a sandbox and say so.")


def write_exercise_paths(python: Path) -> None:
    """Put every exercises/<stage> folder on the environment's path.

    Stage files import earlier stages by module name (`from attention import Head`); with
    these paths your IDE resolves those imports, and `python exercises/07_layernorm/gpt.py`
    runs. The grader sets its own path when it grades, so this never changes a score.
    """
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    folders = sorted(p for p in (ROOT / "exercises").iterdir() if p.is_dir())
    Path(site, "scratchgpt_exercises.pth").write_text("".join(f"{p}\n" for p in folders))


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("check", "test", "setup"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "setup":
        set_up("test,train")
        print(f"Ready. Activate the environment with `source {VENV.name}/bin/activate`, then run `python -m grader list`.")
        return 0
    if command == "check":
        python = set_up("")
        return subprocess.run([str(python), "-m", "grader", "check", *(rest or ["01_bpe"])], cwd=ROOT).returncode
    python = set_up("test,nbgrader")
    return subprocess.run([str(python), "-m", "pytest", *(rest or ["-q"])], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
