"""Set up the course and run it: the README's commands.

    python course.py check 01_bpe          set up (once), then check your code for a stage
    python course.py setup                 set up only: what learners need, `train` included
    python course.py setup --instructor    set up for grading a class (adds nbgrader)
    python course.py test                  set up (once, with test tools), then run the project's tests

Set-up makes a virtual environment in .venv that reuses the torch of the Python you run this
with (a CUDA build, say, or one in another virtual environment) as it is. Only when no
torch can be found does it install torch==2.13.0. Each command installs only what an earlier
one has not: after `setup`, `check` installs nothing; running any of them again installs
nothing new unless pyproject.toml changed.
"""
from __future__ import annotations

import hashlib
import json
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


# What each command needs installed, as pyproject.toml's extras. A learner's set-up
# includes `train`, so that `python -m grader train` works at stage 07 without another
# install.
LEARNER = ("train",)
INSTRUCTOR = ("train", "nbgrader")
PROJECT_TESTS = ("test", "train", "nbgrader")


def set_up(extras: tuple[str, ...]) -> Path:
    if sys.version_info < (3, 10):
        sys.exit(f"ScratchGPT needs Python 3.10 or newer; this is {sys.version.split()[0]}.")
    if extras != LEARNER:  # tests and instructors: graded code runs in a bubblewrap sandbox where there is one
        ensure_bubblewrap()
    python = venv_python()
    if not python.exists():
        print(f"Creating {VENV.name}/ ...")
        venv.EnvBuilder(system_site_packages=True, with_pip=True).create(VENV)
    # One stamp for every command: the pyproject.toml it installed and the extras installed
    # so far. A command whose extras are already there installs nothing.
    stamp = VENV / ".installed.json"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    try:
        state = json.loads(stamp.read_text())
        installed, current = set(state["extras"]), state["pyproject"] == wanted
    except (OSError, ValueError, KeyError, TypeError):  # no stamp, or an unreadable one: install
        installed, current = set(), False
    if current and installed.issuperset(extras):
        return python
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if not has_module(python, "torch"):
        reuse_torch(python)
    if not has_module(python, "torch"):
        print(f"No torch found; installing {TORCH_PIN} ...")
        run(*pip, TORCH_PIN)
    extras = tuple(sorted(installed.union(extras)))
    print("Installing the course's packages ...")
    run(*pip, "-e", f".[{','.join(extras)}]")
    write_exercise_paths(python)
    stamp.write_text(json.dumps({"pyproject": wanted, "extras": list(extras)}))
    return python


def reuse_torch(python: Path) -> None:
    """Let .venv see the torch of the Python running this script, when it has one.

    .venv sees the base installation's packages on its own; this covers a torch in another
    virtual environment or a conda environment. The folder that holds torch goes at the end
    of .venv's path, so the course's pinned packages installed in .venv still come first.
    """
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return
    site = Path(next(iter(spec.submodule_search_locations))).resolve().parent
    print(f"Reusing the torch in {site} ...")
    Path(purelib(python), "scratchgpt_reused_torch.pth").write_text(f"{site}\n")


def purelib(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()


def ensure_bubblewrap() -> None:
    """Best effort: install bubblewrap, the sandbox of isolated grading (`check --isolate`).
    Never fails the set-up: without it, grading still isolates learner code in its own
    process and says loudly that it is not sandboxed."""
    ensure_system_package("bwrap", "bubblewrap", "the sandbox for grading",
                          "grading will run without a sandbox and say so")


# Browsers that tests/test_classreport.py can open the class report in, the first found.
HEADLESS_BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def ensure_browser() -> None:
    """Best effort: install a headless browser, in which tests/test_classreport.py opens the
    class report. Without one that test fails and says how to install it."""
    import shutil

    if not any(shutil.which(name) for name in HEADLESS_BROWSERS):
        ensure_system_package("chromium-headless-shell", "chromium-headless-shell",
                              "a headless browser for the class report's test", "that test will fail and say why")


def ensure_system_package(command: str, package: str, purpose: str, otherwise: str) -> None:
    """Install a Debian package when `command` is missing and this is root on Debian or Ubuntu."""
    import shutil

    if shutil.which(command) or os.name != "posix" or os.geteuid() != 0 or not Path("/etc/debian_version").exists():
        return
    print(f"Installing {package} ({purpose}) ...")
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]):
            subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"Could not install {package} ({exc}); {otherwise}.")


def write_exercise_paths(python: Path) -> None:
    """Put every exercises/<stage> folder on the environment's path.

    Stage files import earlier stages by module name (`from attention import Head`); with
    these paths your IDE resolves those imports, and `python exercises/07_layernorm/gpt.py`
    runs. The grader sets its own path when it grades, so this never changes a score.
    """
    site = purelib(python)
    folders = sorted(p for p in (ROOT / "exercises").iterdir() if p.is_dir())
    Path(site, "scratchgpt_exercises.pth").write_text("".join(f"{p}\n" for p in folders))


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("check", "test", "setup"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "setup":
        if rest not in ([], ["--instructor"]):
            print(__doc__)
            return 2
        set_up(INSTRUCTOR if rest else LEARNER)
        activate = f"{VENV.name}\\Scripts\\activate" if os.name == "nt" else f"source {VENV.name}/bin/activate"
        print(f"Ready. Activate the environment with `{activate}`, then run `python -m grader list`.")
        return 0
    if command == "check":
        python = set_up(LEARNER)
        return subprocess.run([str(python), "-m", "grader", "check", *(rest or ["01_bpe"])], cwd=ROOT).returncode
    if not (ROOT / "tests").is_dir():
        print(
            "The project's tests are not part of the student release: they test the grader, and\n"
            "stay in the full course repository. To check your own code, run\n"
            "`python course.py check STAGE`, for example `python course.py check 01_bpe`."
        )
        return 2
    python = set_up(PROJECT_TESTS)
    ensure_browser()
    return subprocess.run([str(python), "-m", "pytest", *(rest or ["-q"])], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
