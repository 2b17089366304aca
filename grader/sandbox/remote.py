"""The implementation handle for learner code that runs in another process.

`RemoteImplementation` has the interface of `handle.Implementation` (module, probe, load,
files, label), and its handles behave like `ObjectHandle` and `LearnerCallable`: attribute
access, calls, setattr, plain data back, learner objects as further handles. The suites run
unchanged. The difference is where the learner's code runs: in the child, behind a pipe;
what comes back is read with `torch.load(weights_only=True)` and nothing else.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from hypothesis import register_random

from .. import intake
from ..course import Course, Stage
from ..handle import (
    Implementation,
    LearnerCallable,
    LearnerError,
    LoadError,
    NotImplementedByLearner,
    ObjectHandle,
    probe_call,
)
from . import protocol, wire
from .jail import Sandbox, SandboxFailure, _size, start_sandbox, tree_cpu_seconds

GRACE = 1.0  # the runner's own alarm stops a slow check; this is the backstop behind it
MAX_PARTS = 5_000_000  # pieces of plain data in one answer

_overhead = [0.0]  # seconds spent on the pipes rather than in learner code, this process


def overhead_seconds() -> float:
    """A running total of the time calls spent crossing to the child and back.

    Speed checks subtract it, so that a ratio against the reference measures the learner's
    code and not the pipe (see grader/checks/speed.py). Always 0.0 in-process.
    """
    return _overhead[0]


class RemoteLearnerError(LearnerError):
    """LearnerError for an exception raised in the child: the traceback comes as text."""

    def __init__(self, original: BaseException, where: str, call: str, traceback_text: str):
        self._traceback_text = traceback_text
        super().__init__(original, where, call)

    def traceback(self) -> str:
        return self._traceback_text.rstrip() or super().traceback()


class GraderBug(RuntimeError):
    """The suite asked for something the sandbox cannot do (an argument that cannot be sent)."""


class RemoteImplementation:
    """The code under test for one stage, running in a sandboxed child process."""

    def __init__(self, local: Implementation, course: Course, sandbox: Sandbox | None = None):
        self.local = local  # where the files are; never loaded in this process
        self.stage: Stage = local.stage
        self.role = "impl"
        self.search_path = local.search_path
        self.course = course
        self.sandbox = sandbox or start_sandbox(course, local.stage)
        self.label = f"{local.label}; {self.sandbox.describe()}"
        self.isolation = {"mode": self.sandbox.mode, "sandboxed": self.sandbox.mode == "bwrap", "reason": self.sandbox.reason}
        self.refused = local.refused
        self._copy_files()
        self._modules: dict[str, int] = {}
        self._all_modules: set[str] = set()
        self._seq = 0
        self._released: list[int] = []
        self._live: dict[int, int] = {}
        self._generation = 0  # handles of an earlier child are stale
        self._stable: dict = {}  # (module id, name) -> handle of a module's function or class
        self._types: dict[int, frozenset] = {}  # class id in the child -> its plain methods
        self._check_started: float | None = None
        self._stage_deadline: float | None = None
        self._begin_pending = False
        self._restart_failure: str | None = None
        self._round_trip = 0.0  # seconds, an empty request and its answer (see _calibrate)
        self._closed = False
        self._finalizer = weakref.finalize(self, self.sandbox.close)

    def __repr__(self) -> str:
        return self.role

    # -- files ------------------------------------------------------------------------------

    def _copy_files(self) -> None:
        """The submission and the earlier stages into the sandbox, through intake: no link is
        followed, nothing outside the learner's folder is read, odd files refuse the submission."""
        box = self.sandbox
        sources = [(self.search_path[0], box.work, self.stage)]
        sources += [(source, box.dep_dirs.get(source.name), None) for source in self.search_path[1:]]
        for source, target, stage in sources:
            if self.refused or target is None or not source.is_dir():
                continue
            try:
                intake.copy(intake.take(source, stage, folder=source), target)
            except intake.Refused as exc:
                self.refused = str(exc)
        self.child_search_path = [box.work] + [box.dep_dirs.get(p.name, p) for p in self.search_path[1:]]

    @property
    def files(self) -> list[Path]:
        """The stage's files as copied when grading began (what the child imports); none when
        intake refused the submission."""
        return [] if self.refused else [self.sandbox.work / f for f in self.stage.files]

    @property
    def scan_files(self) -> list[Path]:
        """What the 'from scratch' scan reads: the stage's files and the modules of the
        submission they import, so that a forbidden call cannot hide in a helper file."""
        return _imported_closure(self.files, self.sandbox.work)

    # -- lifecycle --------------------------------------------------------------------------

    def load(self, all_module_names: set[str]) -> None:
        self._all_modules = set(all_module_names)
        if self.refused:
            raise LoadError(self.refused)
        if not self.sandbox.alive:
            self.sandbox.start()
        self._load_modules()

    def _load_modules(self) -> None:
        self._generation += 1
        self._live.clear()
        self._released.clear()
        self._stable.clear()
        self._types.clear()
        self._calibrate()
        request = {
            "stage": asdict(self.stage),
            "label": self.local.label,
            "search_path": [str(p) for p in self.child_search_path],
            "all_modules": sorted(self._all_modules),
        }
        try:
            what = "import " + ", ".join(self.stage.module_names)
            reply = self._request("load", what, deadline=time.monotonic() + self.stage.check_time_limit, **request)
        except SandboxFailure as exc:
            message = str(exc)
            if exc.limit == "wall":
                message = (
                    f"Importing your code took longer than {self.stage.check_time_limit:g} s. Code at the top level of a "
                    "file runs on import; keep experiments under `if __name__ == \"__main__\":`."
                )
            else:
                message = f"Importing your code failed: {message} Code at the top level of a file runs on import; keep experiments under `if __name__ == \"__main__\":`."
            raise LoadError(message) from None
        if "load_error" in reply:
            raise LoadError(str(reply["load_error"]))
        if "error" in reply:  # the loader itself failed in the child
            error = reply["error"] if type(reply["error"]) is dict else {}
            raise LoadError(f"Importing your code failed: {error.get('type')}: {error.get('message')}")
        modules = reply.get("modules")
        if type(modules) is not dict or not all(type(k) is str and type(v) is int for k, v in modules.items()):
            raise LoadError("Importing your code failed: the process running it gave an unreadable answer.")
        self._modules = modules

    def _calibrate(self) -> None:
        """Time a few empty round trips while the child runs only the grader's code (before
        the learner's modules are imported): the pipe's cost, for speed checks to subtract."""
        self._round_trip = 0.0
        times = []
        deadline = time.monotonic() + self.stage.check_time_limit
        for _ in range(5):
            start = time.perf_counter()
            self._request("ping", "a ping", deadline=deadline)
            times.append(time.perf_counter() - start)
        self._round_trip = sorted(times)[len(times) // 2]

    def child_cpu_seconds(self) -> float:
        """CPU seconds of the child and of every process it started, read from outside (each
        process's CPU clock, and /proc for children they have already reaped). Speed checks
        time learner code with it (grader.checks.speed.cpu_clock): the child's own clocks,
        which learner code can replace, are never asked."""
        proc = self.sandbox.proc
        return 0.0 if proc is None else tree_cpu_seconds(proc.pid)

    def begin_check(self, check_id: str = "", stage_seconds_left: float | None = None) -> None:
        """Called by the runner before each check: limits per check count from here."""
        self._restart_failure = None
        if not self.sandbox.alive and self._modules:
            # The last check stopped the child: a fresh one, with the learner's modules, before
            # this check's clock starts.
            try:
                self.sandbox.start()
                self._load_modules()
            except (LoadError, SandboxFailure) as exc:
                self._restart_failure = f"Your code could not be started again after the last check: {exc}"
        now = time.monotonic()
        self._check_started = now
        self._stage_deadline = None if stage_seconds_left is None else now + max(stage_seconds_left, 0.0)
        self._begin_pending = True
        self._stable.clear()  # looked up afresh in every check
        self.sandbox.begin_check()

    def end_check(self) -> None:
        self._check_started = None

    @contextlib.contextmanager
    def temporary_directory(self):
        """A fresh folder both sides can use (the suite's tmp_path): inside the child's scratch."""
        path = Path(tempfile.mkdtemp(prefix="grader-", dir=self.sandbox.scratch))
        if self.sandbox.uid is not None:
            os.chown(path, self.sandbox.uid, self.sandbox.uid)
        try:
            yield str(path)
        finally:
            from .jail import _remove_tree

            _remove_tree(path)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the handle interface ---------------------------------------------------------------

    def module(self, name: str) -> "RemoteHandle":
        if name not in self._modules:
            raise KeyError(f"{name} is not a module of stage {self.stage.id}")
        return RemoteHandle(self, self._generation, self._modules[name], name, "module", pinned=True)

    def probe(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run a trusted grader function (from grader/probes.py) on learner objects, in the child."""
        module, name = getattr(fn, "__module__", ""), getattr(fn, "__qualname__", "")
        if module != "grader.probes":
            raise GraderBug(
                f"impl.probe({name or fn!r}): probes run in the learner's process in isolated mode, so they must be "
                "functions of grader/probes.py."
            )
        call = probe_call(fn, args)
        reply = self._request("probe", call, module=module, name=name, args=self._send(args), kwargs=self._send(kwargs))
        return self._answer(reply, call)

    def _call(self, hid: int, generation: int, args: tuple, kwargs: dict, call: str) -> Any:
        self._check_generation(generation, call)
        reply = self._request("call", call, id=hid, args=self._send(args), kwargs=self._send(kwargs))
        return self._answer(reply, call)

    def _callattr(self, hid: int, generation: int, owner: str, attr: str, args: tuple, kwargs: dict) -> Any:
        name, call = f"{owner}.{attr}", f"{owner}.{attr}()"
        self._check_generation(generation, call)
        reply = self._request("callattr", call, id=hid, attr=attr, args=self._send(args), kwargs=self._send(kwargs))
        if reply.get("no_attribute"):
            raise LearnerError(AttributeError(f"{owner} has no attribute '{attr}'"), "", name)
        return self._answer(reply, call)

    def _getattr(self, hid: int, generation: int, owner: str, attr: str) -> Any:
        name = f"{owner}.{attr}"
        self._check_generation(generation, name)
        cached = self._stable.get((hid, name))
        if cached is not None:
            return cached
        reply = self._request("getattr", name, id=hid, attr=attr)
        if reply.get("no_attribute"):
            raise LearnerError(AttributeError(f"{owner} has no attribute '{attr}'"), "", name)
        value = self._answer(reply, name, attribute=True)
        if reply.get("stable") is True and hid in self._modules.values():
            # A function or class of a learner module (suites look them up for every example):
            # one round trip per check instead of one per use.
            self._stable[(hid, name)] = value
        return value

    def _setattr(self, hid: int, generation: int, owner: str, attr: str, value: Any) -> None:
        name = f"{owner}.{attr}"
        self._check_generation(generation, name)
        reply = self._request("setattr", name, id=hid, attr=attr, value=self._send(value))
        self._answer(reply, name)

    # -- requests and answers -----------------------------------------------------------------

    def _check_generation(self, generation: int, what: str) -> None:
        if self._restart_failure:
            raise SandboxFailure(self._restart_failure, "exit")
        if generation != self._generation:
            raise SandboxFailure(
                f"The grader could not call {what}: the process that made this object was stopped earlier "
                "(see the check that failed before this one), so this check got no answer.",
                "exit",
            )

    def _deadline(self) -> float:
        now = time.monotonic()
        start = self._check_started if self._check_started is not None else now
        deadline = start + self.stage.check_time_limit + GRACE
        if self._stage_deadline is not None:
            deadline = min(deadline, self._stage_deadline + GRACE)
        return deadline

    def _request(self, op: str, what: str, deadline: float | None = None, **fields: Any) -> dict:
        if self._closed:
            raise SandboxFailure("The grader had already stopped your code's process.", "exit")
        self._seq += 1
        # What is global in one process is mirrored, so learner code runs as it would in-process:
        # a suite's torch.set_num_threads(1) or torch.no_grad() reaches the child too.
        ambient = (torch.get_num_threads(), torch.is_grad_enabled(), torch.get_default_dtype())
        fields.update(op=op, seq=self._seq, release=self._released[:], begin=self._begin_pending, ambient=ambient)
        if _pending_seed[0] is not None:
            fields["seed"], _pending_seed[0] = _pending_seed[0], None
        packing = time.perf_counter()
        try:
            payload = wire.dump_request(fields)
        except Exception as exc:  # noqa: BLE001
            raise GraderBug(
                f"The grader cannot send the arguments of {what} to the learner's process ({type(exc).__name__}: {exc}). "
                "Suites may pass plain data and handles only."
            ) from None
        self._released.clear()
        self._begin_pending = False
        max_reply = min(max(64, self.sandbox.limits.memory_mb), 512) << 20  # an answer in this process's memory
        started = time.perf_counter()
        packing = started - packing
        try:
            answer, printed = self.sandbox.transact(payload, deadline or self._deadline(), what, max_reply)
        except BaseException:
            self.sandbox.kill()  # an alarm or Ctrl-C mid-request leaves the pipe unusable
            raise
        if printed:
            self._forward(printed)
        unpacking = time.perf_counter()
        try:
            reply, blobs = wire.load_answer(answer)  # JSON and raw numbers: nothing is unpickled
        except wire.Unreadable as exc:
            self.sandbox.kill()
            raise SandboxFailure(
                f"The process running your code answered {what} with something that is not plain data "
                f"({exc}), so this check got no answer.",
                "protocol",
            ) from None
        reply["~blobs"] = blobs
        if reply.get("seq") != self._seq:
            self.sandbox.kill()
            raise SandboxFailure(f"The process running your code answered out of turn while the grader called {what}.", "protocol")
        # The pipe's share of this call, for speed checks: the round trip measured before any
        # learner code was imported, plus this side's packing. Never what the child says: a
        # learner's process could claim its code took no time at all.
        _overhead[0] += min(time.perf_counter() - started, self._round_trip + packing + time.perf_counter() - unpacking)
        if "grader_error" in reply:
            raise GraderBug(str(reply["grader_error"]))
        return reply

    def _forward(self, printed: bytes) -> None:
        """What learner code printed during a call goes where the runner captures a check's output."""
        if self._check_started is None:
            return  # while importing: never onto the grader's own terminal
        try:
            sys.stdout.write(printed.decode("utf-8", "replace"))
        except Exception:  # noqa: BLE001
            pass

    def _answer(self, reply: dict, call: str, attribute: bool = False) -> Any:
        if "error" in reply:
            error = self._error(reply["error"], call)
            if isinstance(error, SandboxFailure):
                # A limit was hit: processes the learner started may still hold it (a forked copy of the
                # child, threads that cannot start), so the next check gets a fresh child.
                self.sandbox.kill()
            raise error
        if "ok" not in reply:
            self.sandbox.kill()
            raise SandboxFailure(f"The process running your code gave no answer to {call}.", "protocol")
        try:
            return self._decode(reply["ok"], call, reply["~blobs"], [MAX_PARTS], attribute)
        except (wire.Unreadable, RecursionError, TypeError, ValueError, OverflowError) as exc:
            self.sandbox.kill()
            raise SandboxFailure(
                f"The process running your code answered {call} with data the grader cannot read ({exc}), so this "
                "check got no answer.",
                "protocol",
            ) from None

    def _error(self, info: Any, call: str) -> BaseException:
        if type(info) is not dict:
            return SandboxFailure(f"The process running your code reported an unreadable error for {call}.", "protocol")
        text = lambda key: str(info.get(key, ""))  # noqa: E731
        memory = info.get("memory")
        if memory is not None:
            limit = self.sandbox.limits.memory_mb << 20
            asked = f"it asked for {_size(memory)} more, " if isinstance(memory, int) and memory > 0 else ""
            return SandboxFailure(
                f"Your code ran out of memory while the grader called {call}: {asked}and one process may use "
                f"{_size(limit)} (memory_limit). Look for a tensor far larger than the inputs need, such as a "
                "(T, T) matrix per position, or a list that keeps growing.",
                "memory",
            )
        if info.get("processes"):
            return SandboxFailure(
                f"Your code tried to start more processes or threads than the limit of {self.sandbox.limits.processes} "
                f"(max_processes) while the grader called {call}. Graded code needs no processes of its own.",
                "processes",
            )
        if info.get("file_too_large"):
            return SandboxFailure(
                f"Your code wrote a file larger than the limit of {_size(self.sandbox.limits.output_kb * 1024)} "
                f"(output_limit) while the grader called {call}.",
                "file",
            )
        original = _rebuild_exception(info)
        where = text("where")
        if info.get("not_implemented") is True:
            return NotImplementedByLearner(original, where, call)
        return RemoteLearnerError(original, where, call, text("traceback"))

    def _send(self, value: Any) -> Any:
        """Like handle.unwrap: handles become Ref(id); tensors are copied (no autograd link)."""
        if isinstance(value, RemoteMethod):
            owner = value._owner
            self._send(owner)  # the same checks as for its object
            return protocol.MethodRef(owner._remote_id, value._attr)
        if isinstance(value, (RemoteHandle, RemoteCallable)):
            impl, generation, hid, name = value._remote_parts()
            if impl is not self:
                raise GraderBug(f"{name} belongs to another implementation; it cannot be passed to this one.")
            self._check_generation(generation, name)
            return protocol.Ref(hid)
        if isinstance(value, torch.Tensor):
            copy = value.detach().as_subclass(torch.Tensor).clone()
            return copy.requires_grad_(True) if value.requires_grad and copy.is_floating_point() else copy
        kind = type(value)
        if kind in (list, tuple):
            return kind(self._send(v) for v in value)
        if kind is dict:
            return {k: self._send(v) for k, v in value.items()}
        return value

    def _decode(self, node: Any, name: str, blobs: list, budget: list, attribute: bool = False) -> Any:
        """Plain data from the child's wire nodes (grader.sandbox.wire); handles for learner objects."""
        budget[0] -= 1
        if budget[0] < 0:
            raise wire.Unreadable(f"more than {MAX_PARTS} parts")
        kind = type(node)
        if node is None or kind is bool or kind is int or kind is float or kind is str:
            return node
        if kind is list:
            return [self._decode(v, name, blobs, budget) for v in node]
        if kind is not dict:
            raise wire.Unreadable(f"a {kind.__name__}")
        tag = node.get("~")
        if tag == "t":
            return tuple(self._decode(v, name, blobs, budget) for v in _list(node.get("v")))
        if tag == "d":
            keys, values = _list(node.get("k")), _list(node.get("v"))
            if len(keys) != len(values):
                raise wire.Unreadable("a malformed dict")
            return {self._decode(k, name, blobs, budget): self._decode(v, name, blobs, budget) for k, v in zip(keys, values)}
        if tag == "T":
            return wire.tensor_from_blob(node, _blob(node, blobs))
        if tag == "h":
            return self._handle(node, name, attribute)
        if tag == "b":
            return bytes(_blob(node, blobs))
        if tag == "c":
            parts = _list(node.get("v"))
            if len(parts) != 2 or not all(type(p) in (int, float) for p in parts):
                raise wire.Unreadable("a malformed complex number")
            return complex(*parts)
        if tag == "dt":
            dtype = getattr(torch, str(node.get("v", "")).removeprefix("torch."), None)
            if not isinstance(dtype, torch.dtype):
                raise wire.Unreadable("an unknown dtype")
            return dtype
        if tag == "dev":
            return torch.device(str(node.get("v")))
        if tag == "nd":
            return _ndarray(node, _blob(node, blobs))
        raise wire.Unreadable("an unknown kind of value")

    def _handle(self, node: dict, name: str, attribute: bool) -> Any:
        hid, is_callable, type_name = node.get("id"), node.get("callable"), node.get("type")
        if type(hid) is not int or type(is_callable) is not bool or type(type_name) is not str:
            raise wire.Unreadable("a malformed handle")
        if attribute and is_callable:
            return RemoteCallable(self, self._generation, hid, name)
        tid, methods = node.get("t"), node.get("m")
        if type(methods) is list and type(tid) is int and all(type(m) is str for m in methods):
            self._types[tid] = frozenset(methods)  # sent once per class and child
        return RemoteHandle(self, self._generation, hid, name, type_name, methods=self._types.get(tid, frozenset()))

    def _track(self, handle, hid: int) -> None:
        self._live[hid] = self._live.get(hid, 0) + 1
        weakref.finalize(handle, self._forget, self._generation, hid)

    def _forget(self, generation: int, hid: int) -> None:
        if generation != self._generation:
            return
        left = self._live.get(hid, 1) - 1
        if left <= 0:
            self._live.pop(hid, None)
            self._released.append(hid)
        else:
            self._live[hid] = left


class RemoteHandle(ObjectHandle):
    """A learner object in the child, seen from a suite: like handle.ObjectHandle (and an
    instance of it, for suites that ask `isinstance(x, ObjectHandle)`)."""

    # ObjectHandle's own slots (_impl, _name) shadow learner attributes of those names in both
    # modes; these have names no learner attribute is likely to have.
    __slots__ = ("_remote_generation", "_remote_id", "_remote_type", "_remote_methods", "__weakref__")

    def __init__(self, impl, generation: int, hid: int, name: str, type_name: str, pinned: bool = False, methods=frozenset()):
        object.__setattr__(self, "_impl", impl)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_remote_generation", generation)
        object.__setattr__(self, "_remote_id", hid)
        object.__setattr__(self, "_remote_type", type_name)
        object.__setattr__(self, "_remote_methods", methods)
        if not pinned:
            impl._track(self, hid)

    def _remote_parts(self):
        return self._impl, self._remote_generation, self._remote_id, self._name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)  # copy, pickle and friends probing for protocols
        if attr in self._remote_methods:
            # A plain method of the object's class: looking it up runs no learner code, so the
            # lookup travels with the call (one round trip instead of two).
            return RemoteMethod(self, attr)
        return self._impl._getattr(self._remote_id, self._remote_generation, self._name, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        self._impl._setattr(self._remote_id, self._remote_generation, self._name, attr, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._impl._call(self._remote_id, self._remote_generation, args, kwargs, f"{self._name}(...)")

    def __repr__(self) -> str:
        return f"<{self._remote_type} from {self._impl.local.label}>"


class RemoteCallable(LearnerCallable):
    """A learner function or method in the child: like handle.LearnerCallable."""

    __slots__ = ("_remote_generation", "_remote_id", "__weakref__")

    def __init__(self, impl, generation: int, hid: int, name: str):
        self._impl, self._remote_generation, self._remote_id, self._name = impl, generation, hid, name
        impl._track(self, hid)

    def _remote_parts(self):
        return self._impl, self._remote_generation, self._remote_id, self._name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._impl._call(self._remote_id, self._remote_generation, args, kwargs, f"{self._name}()")

    def __repr__(self) -> str:
        return f"<{self._name} from {self._impl.local.label}>"


class RemoteMethod(LearnerCallable):
    """`handle.method`, looked up in the child when it is called. It keeps its object's handle,
    so the object lives as long as the method does, as a bound method keeps its object."""

    __slots__ = ("_owner", "_attr")

    def __init__(self, owner: RemoteHandle, attr: str):
        self._owner, self._attr = owner, attr
        self._impl, self._name, self._fn = owner._impl, f"{owner._name}.{attr}", None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        owner = self._owner
        return self._impl._callattr(owner._remote_id, owner._remote_generation, owner._name, self._attr, args, kwargs)

    def __repr__(self) -> str:
        return f"<{self._name} from {self._impl.local.label}>"


# Messages name a value's type ("but it is a ObjectHandle: <Tokenizer from submission>"):
# the same words in both modes.
RemoteHandle.__name__ = RemoteHandle.__qualname__ = "ObjectHandle"
RemoteCallable.__name__ = RemoteCallable.__qualname__ = "LearnerCallable"
RemoteMethod.__name__ = RemoteMethod.__qualname__ = "LearnerCallable"


class _ChildRandom:
    """hypothesis reseeds every registered generator before each example (the runner registers
    torch's, so learner code that samples answers the same for the same example). This one
    passes the seed on: the next request reseeds the child's torch, random and numpy."""

    def seed(self, seed: int) -> None:
        _pending_seed[0] = seed

    def getstate(self):
        return None

    def setstate(self, state) -> None:
        pass


_pending_seed: list = [None]
register_random(_CHILD_RANDOM := _ChildRandom())  # hypothesis keeps only a weak reference


def _list(value: Any) -> list:
    if type(value) is not list:
        raise wire.Unreadable("a malformed value")
    return value


def _blob(node: dict, blobs: list):
    index = node.get("i")
    if type(index) is not int or not 0 <= index < len(blobs):
        raise wire.Unreadable("a reference to missing data")
    return blobs[index]


def _ndarray(node: dict, blob) -> np.ndarray:
    dtype, shape = node.get("dtype"), node.get("shape")
    if type(dtype) is not str or type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise wire.Unreadable("a malformed array")
    try:
        kind = np.dtype(dtype)
    except TypeError:
        raise wire.Unreadable("an array of an unknown dtype") from None
    if kind.hasobject or kind.itemsize == 0:
        raise wire.Unreadable("an array of Python objects")
    count = 1
    for d in shape:
        count *= d
    if count * kind.itemsize != len(blob):
        raise wire.Unreadable("an array of the wrong size")
    return np.frombuffer(bytes(blob), dtype=kind).reshape(shape).copy()


def _rebuild_exception(info: dict) -> BaseException:
    """A stand-in for the learner's exception: same type name and message, and an instance
    of the same built-in exception class (ValueError, KeyError, ...) so suites can test it."""
    import builtins

    name = str(info.get("type") or "Exception")
    message = str(info.get("message") or "")
    base: type = Exception
    for candidate in info.get("bases") or ():
        found = getattr(builtins, str(candidate), None)
        if isinstance(found, type) and issubclass(found, BaseException):
            base = found
            break
    if not issubclass(base, Exception) and base is not SystemExit:
        base = Exception  # KeyboardInterrupt and friends never leave the learner's process here
    try:
        kind = type(name, (base,), {"__str__": lambda self: self._grader_message, "__module__": str(info.get("module") or "builtins")})
        exc = kind.__new__(kind)
        exc.args = (message,) if message else ()
        exc._grader_message = message
        return exc
    except Exception:  # noqa: BLE001 - a base that refuses to be built this way
        exc = Exception(message)
        return exc


def _imported_closure(files: list[Path], folder: Path) -> list[Path]:
    """The files, and every module of `folder` they import, directly or not (static imports)."""
    import ast

    seen: list[Path] = []
    todo = [f for f in files if f.is_file()]
    while todo:
        path = todo.pop(0)
        if path in seen:
            continue
        seen.append(path)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level:
                names.update(a.name for a in node.names)
                if node.module:
                    names.add(node.module)
        for name in names:
            parts = name.split(".")
            for candidate in (folder.joinpath(*parts).with_suffix(".py"), folder.joinpath(*parts) / "__init__.py"):
                if candidate.is_file() and candidate not in seen:
                    todo.append(candidate)
    return seen
