"""The child process that runs learner code: its folder, its sandbox, its limits, its pipes.

The grader (the trusted parent) never runs learner code itself in isolated mode. It makes a
folder holding a copy of the submission, the public support code the child needs and a
scratch folder, starts `python -I` there, and talks to it over two pipes. Where the machine
has bubblewrap the child runs inside it: only the Python installation, the system libraries,
the copy of the submission (read-only), the reference code of the earlier stages it builds
on and the scratch folder are visible; no network; its own PID namespace; it dies with its
parent. Without bubblewrap the child is still a separate process with the same limits, and
the grader says loudly that it is not sandboxed.

Limits (from course.toml, see `Limits`) are enforced from outside wherever possible: wall
time and CPU time by the parent, which kills the whole process group; memory, processes and
file size by rlimits that the child sets on itself before any learner code is imported
(hard limits, which the learner cannot raise again).

This module imports neither torch nor numpy, so the child can start while the grader loads.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import protocol

GRADER_DIR = Path(__file__).resolve().parent.parent  # the grader package
BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from grader.sandbox.child import main; main(sys.argv[2])"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime")
PASSED_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")
MODE_ENV = "GRADER_SANDBOX"  # auto (default), bwrap (required), process (no sandbox)


class SandboxFailure(BaseException):
    """A check got no answer from learner code: a limit was exceeded, or its process died.

    A BaseException, like NotImplementedByLearner, so that neither a suite's `except
    Exception` nor hypothesis' shrinking can swallow it: the check fails with this message.
    """

    def __init__(self, message: str, limit: str = ""):
        self.limit = limit  # wall, cpu, memory, processes, output, file, exit, protocol, ...
        super().__init__(message)


class SandboxUnavailable(Exception):
    """GRADER_SANDBOX=bwrap asked for a real sandbox and this machine cannot make one."""


@dataclass(frozen=True)
class Limits:
    check_wall: float  # seconds, one check
    stage_wall: float  # seconds, the whole stage
    check_cpu: float  # CPU seconds of every process of the child together, one check
    stage_cpu: float  # CPU seconds, the whole stage
    memory_mb: int  # per process: heap and anonymous memory (RLIMIT_DATA), address space as a backstop
    processes: int  # processes and threads at once (RLIMIT_NPROC)
    output_kb: int  # printed output per check, and the size of any one file written

    @classmethod
    def for_stage(cls, stage) -> "Limits":
        cores = _cores()
        check_wall, stage_wall = float(stage.check_time_limit), float(stage.time_limit)
        return cls(
            check_wall=check_wall,
            stage_wall=stage_wall,
            check_cpu=float(getattr(stage, "check_cpu_limit", 0) or check_wall * cores),
            stage_cpu=float(getattr(stage, "cpu_limit", 0) or stage_wall * cores),
            memory_mb=int(getattr(stage, "memory_limit", 0) or 4096),
            processes=int(getattr(stage, "max_processes", 0) or 32 + 2 * cores),
            output_kb=int(getattr(stage, "output_limit", 0) or 1024),
        )


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# --- which kind of isolation this machine gives -------------------------------------------

_bwrap_verdict: dict = {}
_warned: set = set()


def requested_mode() -> str:
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "bwrap", "process"):
        raise SandboxUnavailable(f"{MODE_ENV}={mode!r}: use auto, bwrap or process.")
    return mode


def warn_once(text: str) -> None:
    if text not in _warned:
        _warned.add(text)
        bar = "!" * 78
        print(f"{bar}\n{text}\n{bar}", file=sys.stderr, flush=True)


# --- the child process ----------------------------------------------------------------------


class Sandbox:
    """One folder and (at most) one live child process for one stage of one submission."""

    def __init__(self, stage_id: str, dep_ids: list[str], limits: Limits, course_root: Path, background: bool = False):
        self.stage_id = stage_id
        self.limits = limits
        self.course_root = Path(course_root).resolve()
        _sweep_leftovers()
        self.root = Path(tempfile.mkdtemp(prefix="grader-sandbox-")).resolve()
        (self.root / "owner").write_text(str(os.getpid()))
        self.work = self.root / "work"  # the copy of the submission: the child's working directory
        self.deps = self.root / "deps"  # the earlier stages it builds on
        self.support = self.root / "support"  # the public grader code the child runs
        self.scratch = self.root / "scratch"  # the only folder the child may write (tmp_path lives here)
        for folder in (self.work, self.deps, self.support, self.scratch):
            folder.mkdir()
        self.dep_dirs = {dep: self.deps / dep for dep in dep_ids}
        for folder in self.dep_dirs.values():
            folder.mkdir()
        os.chmod(self.root, 0o755)
        _copy_support(self.support)
        self.generation = 0
        self.proc: subprocess.Popen | None = None
        self._req = self._rep = self._out = None
        self.mode, self.reason = "", ""
        self.uid = None  # the unprivileged user the child becomes (root + bubblewrap only)
        self.cpu_spent = 0.0  # CPU seconds of earlier children of this stage
        self._cpu_base = 0.0  # the child's CPU seconds when the current check began
        self._output_count = 0  # bytes printed in the current check
        self._closed = False
        self._error: BaseException | None = None
        self._started = threading.Event()
        self._child_gone = threading.Event()
        if background:
            # Choosing the sandbox takes two short subprocesses; meanwhile the grader goes on
            # loading (torch, the suites), and the child starts importing as soon as it can.
            threading.Thread(target=self._prepare, args=(True,), daemon=True).start()
        else:
            self._prepare(False)

    def _prepare(self, background: bool) -> None:
        try:
            self.mode, self.reason = self._choose_mode()
            if self.warning():
                warn_once(self.warning())
            if background:
                self._start()
        except BaseException as exc:  # noqa: BLE001 - raised again by ready(), in the caller's thread
            self._error = exc
            if not background:
                raise
        finally:
            self._started.set()
        if background and self._error is None:
            # The child dies with the thread that started it (PR_SET_PDEATHSIG): this one
            # stays until that child is gone, or until the grader's process ends.
            self._child_gone.wait()

    def ready(self) -> "Sandbox":
        """Wait for a start in the background; raise what went wrong there."""
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    # -- what kind of sandbox ---------------------------------------------------------------

    def _choose_mode(self) -> tuple[str, str]:
        mode = requested_mode()
        if mode == "process":
            return "process", f"{MODE_ENV}=process"
        self.mode = "bwrap"  # what the probe tries
        ok, reason = self._bwrap_works()
        if ok:
            return "bwrap", ""
        if mode == "bwrap":
            raise SandboxUnavailable(f"{MODE_ENV}=bwrap, but bubblewrap cannot run here: {reason}")
        return "process", reason

    def _bwrap_works(self) -> tuple[bool, str]:
        key = (os.geteuid(), str(self.root.parent))
        if key not in _bwrap_verdict:
            if shutil.which("bwrap") is None:
                _bwrap_verdict[key] = (False, "bubblewrap (bwrap) is not installed")
            else:
                _bwrap_verdict[key] = self._probe_bwrap()
        return _bwrap_verdict[key]

    def _probe_bwrap(self) -> tuple[bool, str]:
        """Start the real sandbox once with a child that only boots and says ok."""
        uid = self._child_uid(0)
        if uid is not None:
            os.chown(self.scratch, uid, uid)
        config = self._config(None, None, uid, probe=True)
        try:
            done = subprocess.run(
                self._bwrap_command(config), capture_output=True, timeout=60, env=self._env(), cwd="/",
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"bubblewrap did not start: {exc}"
        out = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
        if done.returncode == 0 and "sandbox-ok" in out:
            return True, ""
        return False, f"bubblewrap failed (exit status {done.returncode}): {out[-500:] or 'no message'}"

    def describe(self) -> str:
        self.ready()
        if self.mode == "bwrap":
            return "isolated: bubblewrap sandbox"
        return "isolated process, NOT sandboxed"

    def warning(self) -> str:
        if self.mode == "bwrap":
            return ""
        return (
            f"WARNING: learner code is NOT sandboxed ({self.reason}).\n"
            "It runs in a separate `python -I` process with time, memory, process and output limits,\n"
            "and is judged from outside, but it can read and write this machine's files (the reference\n"
            "solutions and the hidden checks included) and use the network. Install bubblewrap\n"
            "(Debian/Ubuntu: apt-get install bubblewrap) for real isolation."
        )

    # -- starting and stopping ----------------------------------------------------------------

    def start(self) -> None:
        """Start a fresh child (the first, or after one died or was killed)."""
        self.ready()
        self._start()

    def _start(self) -> None:
        self.kill()
        self._child_gone.clear()
        self.generation += 1
        uid = self._child_uid(self.generation)
        if uid is not None:
            os.chown(self.scratch, uid, uid)
        self.uid = uid
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        config = self._config(req_r, rep_w, uid)
        if self.mode == "bwrap":
            command, cwd = self._bwrap_command(config), "/"
        else:
            command, cwd = self._plain_command(config), str(self.work)
        try:
            self.proc = subprocess.Popen(
                command, cwd=cwd, env=self._env(), stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w,
                pass_fds=(req_r, rep_w), start_new_session=True, close_fds=True, preexec_fn=die_with_parent,
            )
        finally:
            for fd in (req_r, rep_w, out_w):
                os.close(fd)
        self._req, self._rep, self._out = req_w, rep_r, out_r
        for fd in (req_w, rep_r, out_r):
            os.set_blocking(fd, False)
        self._inbox = bytearray()
        self._cpu_base = 0.0
        self._output_count = 0

    @property
    def alive(self) -> bool:
        self.ready()
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the child and everything it started (its process group; with bubblewrap, its PID namespace)."""
        proc, self.proc = self.proc, None
        self._child_gone.set()
        if proc is None:
            return
        try:
            self.cpu_spent += tree_cpu_seconds(proc.pid)
        except Exception:  # noqa: BLE001 - accounting only
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            pass
        for fd in (self._req, self._rep, self._out):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._req = self._rep = self._out = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.ready()
        except BaseException:  # noqa: BLE001 - closing after a failed start
            pass
        if self.proc is not None and self.proc.poll() is None:
            try:  # a polite goodbye; the child leaves with os._exit, so no atexit hook runs
                protocol.write_all(self._req, protocol.frame(b"bye"))
            except OSError:
                pass
        self.kill()
        _remove_tree(self.root)

    # -- one request, one answer --------------------------------------------------------------

    def begin_check(self) -> None:
        """Limits per check count from here."""
        self._output_count = 0
        self._cpu_base = tree_cpu_seconds(self.proc.pid) if self.alive else 0.0

    def transact(self, payload: bytes, deadline: float, what: str, max_reply: int) -> tuple[bytes, bytes]:
        """Send one request and wait for its answer: (answer, what the child printed meanwhile).

        Raises SandboxFailure, with the child killed, when a limit is exceeded, the child dies,
        or the answer is not a well-formed frame.
        """
        if not self.alive:
            raise SandboxFailure(self._death_message(what), "exit")
        outgoing = memoryview(protocol.frame(payload))
        printed = bytearray()
        started = time.monotonic()
        next_cpu_check = started + 0.2
        expected = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                self.kill()
                raise SandboxFailure(
                    f"Took longer than this check's limit of {self.limits.check_wall:g} s (stopped after "
                    f"{now - started:.1f} s, while the grader called {what}). Look for an endless loop, or a "
                    "loop in Python where a tensor operation would do.",
                    "wall",
                )
            if now >= next_cpu_check:
                self._check_cpu(what)
                next_cpu_check = now + 0.25
            readers = [self._rep, self._out] if self._out is not None else [self._rep]
            writers = [self._req] if outgoing else []
            try:
                ready_r, ready_w, _ = select.select(readers, writers, [], min(0.25, max(deadline - now, 0.0)))
            except InterruptedError:  # pragma: no cover - Python retries select itself
                continue
            if ready_w:
                try:
                    sent = os.write(self._req, outgoing[: 1 << 16])
                    outgoing = outgoing[sent:]
                except BlockingIOError:
                    pass
                except (BrokenPipeError, OSError):
                    self._reap()
                    raise SandboxFailure(self._death_message(what), "exit") from None
            if self._out in ready_r:
                chunk = os.read(self._out, 1 << 16)
                if chunk:
                    self._output_count += len(chunk)
                    printed += chunk
                    if len(printed) > 64 << 10:
                        del printed[: len(printed) - (64 << 10)]
                    if self._output_count > self.limits.output_kb * 1024:
                        self.kill()
                        raise SandboxFailure(
                            f"Printed more than this check's output limit of {_size(self.limits.output_kb * 1024)} "
                            f"({_size(self._output_count)} so far, then stopped) while the grader called {what}. "
                            "Remove the print statements from loops.",
                            "output",
                        )
                else:
                    os.close(self._out)
                    self._out = None
            if self._rep in ready_r:
                try:
                    chunk = os.read(self._rep, 1 << 20)
                except BlockingIOError:
                    chunk = None
                if chunk == b"":
                    self._reap()
                    raise SandboxFailure(self._death_message(what), "exit")
                if chunk:
                    self._inbox += chunk
                if expected is None and len(self._inbox) >= protocol.HEADER.size:
                    (expected,) = protocol.HEADER.unpack(self._inbox[: protocol.HEADER.size])
                    if expected > max_reply:
                        self.kill()
                        raise SandboxFailure(
                            f"Your code's answer to {what} is {_size(expected)}, over the limit of "
                            f"{_size(max_reply)} for one answer (memory_limit).",
                            "memory",
                        )
                if expected is not None and len(self._inbox) >= protocol.HEADER.size + expected:
                    end = protocol.HEADER.size + expected
                    answer = bytes(self._inbox[protocol.HEADER.size : end])
                    del self._inbox[:end]
                    self._drain_output(printed)
                    return answer, bytes(printed)

    def _drain_output(self, printed: bytearray) -> None:
        while self._out is not None:
            try:
                chunk = os.read(self._out, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                return
            self._output_count += len(chunk)
            printed += chunk

    def _check_cpu(self, what: str) -> None:
        if not self.alive:
            return
        used = tree_cpu_seconds(self.proc.pid)
        if used - self._cpu_base > self.limits.check_cpu:
            self.kill()
            raise SandboxFailure(
                f"Used {used - self._cpu_base:.1f} s of CPU time in this check, over its limit of "
                f"{self.limits.check_cpu:g} s (check_cpu_limit), while the grader called {what}. Look for an "
                "endless loop, or for processes or threads your code leaves running.",
                "cpu",
            )
        if self.cpu_spent + used > self.limits.stage_cpu:
            self.kill()
            raise SandboxFailure(
                f"Used {self.cpu_spent + used:.1f} s of CPU time in this stage, over its limit of "
                f"{self.limits.stage_cpu:g} s (cpu_limit), while the grader called {what}.",
                "cpu",
            )

    def _reap(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass

    def _death_message(self, what: str) -> str:
        code = self.proc.poll() if self.proc is not None else None
        self.kill()
        if code is None:
            return f"Your code's process stopped answering while the grader called {what}, so this check got no answer."
        if self.mode == "bwrap" and code > 128:
            code = -(code - 128)  # bubblewrap passes a signal on as 128 + its number
        if code == -signal.SIGXCPU or code == -signal.SIGKILL and self._cpu_near_limit():
            return (
                f"Your code used up the stage's CPU time limit of {self.limits.stage_cpu:g} s (cpu_limit) while the "
                f"grader called {what}, and was stopped."
            )
        if code < 0:
            name = _signal_name(-code)
            cause = {
                signal.SIGKILL: " (most likely it used more memory than the machine could give it)",
                signal.SIGSEGV: " (a crash inside a native library, often an out-of-range index)",
            }.get(-code, "")
            return f"Your code's process was stopped by {name}{cause} while the grader called {what}, so this check got no answer."
        return (
            f"Your code ended the process that runs it (exit status {code}) while the grader called {what}, so this "
            "check got no answer. Graded code must return its result: do not call os._exit, sys.exit or exit()."
        )

    def _cpu_near_limit(self) -> bool:
        return self.cpu_spent >= 0.95 * self.limits.stage_cpu

    # -- the command line ---------------------------------------------------------------------

    def _child_uid(self, generation: int) -> int | None:
        """As root, bubblewrap keeps the real uid; the child drops to a uid of its own, so that
        the process limit counts only its processes and it owns nothing outside its scratch."""
        if self.mode != "bwrap" or os.geteuid() != 0:
            return None
        return 1_000_000 + os.getpid() * 8 + generation % 8

    def _config(self, fd_in, fd_out, uid, probe: bool = False) -> str:
        limits = self.limits
        memory = limits.memory_mb << 20
        nproc = limits.processes
        if self.mode != "bwrap" and os.geteuid() != 0:
            nproc += _user_tasks(os.getuid())  # without a namespace the limit counts all of this user's tasks
        return json.dumps(
            {
                "in": fd_in,
                "out": fd_out,
                "uid": uid,
                "cwd": str(self.work),
                "probe": probe,
                "limits": {
                    "data": memory,
                    # CUDA reserves tens of GB of address space it never touches; elsewhere the
                    # address space is capped too, with room for the libraries' own mappings.
                    "as": None if _has_cuda_devices() else memory + (4 << 30),
                    "nproc": None if (self.mode != "bwrap" and os.geteuid() == 0) else nproc,
                    "fsize": limits.output_kb * 1024,
                    "cpu": limits.stage_cpu,
                },
            }
        )

    def _env(self) -> dict:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.scratch),
            "TMPDIR": "/tmp" if self.mode == "bwrap" else str(self.scratch),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "USER": "learner",
            "LOGNAME": "learner",
        }
        for key, value in os.environ.items():
            if key in PASSED_ENV or key.startswith(("CUDA_", "NVIDIA_")):
                env[key] = value
        return env

    def _plain_command(self, config: str) -> list[str]:
        return [sys.executable, "-I", "-B", "-c", BOOT, str(self.support), config]

    def _bwrap_command(self, config: str) -> list[str]:
        cmd = [
            "bwrap", "--die-with-parent", "--new-session",
            "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
        ]
        if os.geteuid() == 0:
            # Privileged bubblewrap needs no user namespace; the child uses these two
            # capabilities once, to become its own unprivileged user, before anything else.
            cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            cmd += ["--unshare-user"]
        cmd += ["--proc", "/proc", "--dev", "/dev"]
        cmd += ["--perms", "1777", "--size", str(max(64, self.limits.memory_mb) << 20), "--tmpfs", "/tmp"]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                cmd += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                cmd += ["--ro-bind", path, path]
        for path in SYSTEM_FILES:
            cmd += ["--ro-bind-try", path, path]
        for path in ("/sys/devices/system/cpu", "/sys/devices/system/node"):
            cmd += ["--ro-bind-try", path, path]
        if _has_cuda_devices():
            cmd += ["--ro-bind-try", "/sys", "/sys"]
            for dev in sorted(Path("/dev").glob("nvidia*")):
                cmd += ["--dev-bind-try", str(dev), str(dev)]
        made = {"/", "/tmp", "/usr", "/proc", "/dev"}
        binds = [(p, "--ro-bind") for p in _python_paths(self.course_root)]
        binds += [(self.support, "--ro-bind"), (self.work, "--ro-bind"), (self.deps, "--ro-bind"), (self.scratch, "--bind")]
        for path, how in binds:
            path = str(path)
            for parent in reversed(Path(path).parents):
                parent = str(parent)
                if parent not in made and not any(parent == s or parent.startswith(s + "/") for s in SYSTEM_DIRS):
                    cmd += ["--perms", "0755", "--dir", parent]
                    made.add(parent)
            cmd += [how, path, path]
            made.add(path)
        cmd += ["--chdir", str(self.work)]
        return cmd + self._plain_command(config)

    # -- CPU accounting from outside ------------------------------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of process `pid` and its descendants: each live process's CPU clock (all its
    threads, to the nanosecond, as clock_getcpuclockid gives it) plus the CPU time of the
    children it has reaped (/proc/PID/stat, in clock ticks)."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            total += time.clock_gettime((~p << 3) | 2)  # the process's CPU-time clock (CPUCLOCK_SCHED)
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rfind(b")") + 2 :].split()
            total += (int(fields[13]) + int(fields[14])) / CLK_TCK  # cutime, cstime: reaped children
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children", "rb") as f:
                    todo.extend(int(x) for x in f.read().split())
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile: its parent's reaped time will hold it
    return total


def start_sandbox(course, stage, background: bool = False) -> Sandbox:
    """The child for one stage, started at once: it imports torch while the grader loads.
    In the background, the grader's own loading goes on meanwhile; `ready()` waits for it."""
    sandbox = Sandbox(stage.id, [d.id for d in course.dependencies(stage)], Limits.for_stage(stage), course.root, background)
    if not background:
        sandbox.start()
    return sandbox


# --- helpers ---------------------------------------------------------------------------------


def _copy_support(target: Path) -> None:
    """The public grader code the child runs: no suites (hidden checks live there), no mutants."""
    package = target / "grader"
    for sub in ("", "checks", "sandbox"):
        source = GRADER_DIR / sub
        (package / sub).mkdir(parents=True, exist_ok=True)
        for path in source.glob("*.py"):
            shutil.copyfile(path, package / sub / path.name)


_python_path_cache: dict = {}


def _python_paths(course_root: Path) -> list[str]:
    """The folders `python -I` imports from (the child's own sys.path), outside the course folder."""
    key = str(course_root)
    if key in _python_path_cache:
        return _python_path_cache[key]
    found = subprocess.run(
        [sys.executable, "-I", "-c", "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix] + sys.path))"],
        capture_output=True, text=True, check=True, timeout=60, cwd="/",
    )
    candidates = json.loads(found.stdout) + [os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))]
    prefix = os.path.realpath(sys.prefix)
    course = str(course_root)
    paths = set()
    for path in candidates:
        if not path or not os.path.exists(path):
            continue
        for variant in {os.path.abspath(path), os.path.realpath(path)}:
            inside_course = variant == course or variant.startswith(course + "/")
            inside_env = variant == prefix or variant.startswith(prefix + "/")
            if inside_course and not inside_env:
                continue  # the course's own folders (exercises/, the editable grader) stay hidden
            if any(variant == s or variant.startswith(s + "/") for s in SYSTEM_DIRS):
                continue  # bound already
            if os.path.isfile(variant):  # a zip on sys.path
                variant = os.path.dirname(variant)
            paths.add(variant)
    # Keep the outermost folders only; a folder inside another comes with it.
    ordered = sorted(paths, key=len)
    kept: list[str] = []
    for path in ordered:
        if not any(path == k or path.startswith(k + "/") for k in kept):
            kept.append(path)
    _python_path_cache[key] = kept
    return kept


def _sweep_leftovers() -> None:
    """Remove the folders of graders that were killed (SIGKILL leaves no time to clean up)."""
    for folder in Path(tempfile.gettempdir()).glob("grader-sandbox-*"):
        try:
            owner = int((folder / "owner").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            _remove_tree(folder)
        except (OSError, ValueError):
            continue  # not ours to judge: another user's, or one being made right now


def die_with_parent() -> None:
    """In the new process, before it runs anything: SIGKILL when the grader's thread that
    started it ends (with it, bubblewrap takes the whole sandbox down)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


def _has_cuda_devices() -> bool:
    return any(Path("/dev").glob("nvidia[0-9]*"))


def _user_tasks(uid: int) -> int:
    """How many tasks (threads included) this user runs now: RLIMIT_NPROC counts them all."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            count += int(fields.get("Threads", "1").strip() or 1)
    return count


def _remove_tree(path: Path) -> None:
    def unlock(func, target, _exc):
        try:
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
            func(target)
        except OSError:
            pass

    shutil.rmtree(path, onerror=unlock)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover
