"""The sandboxed side: imports the learner's modules, keeps their objects, answers requests.

Started by `jail.Sandbox` as `python -I -B -c BOOT SUPPORT CONFIG`. Before any learner code
is imported it makes itself harmless to the grader: it dies with its parent, becomes its own
unprivileged user where it started as root inside bubblewrap, sets hard resource limits the
learner cannot raise again, and closes every file descriptor but its two pipes.

Nothing here is trusted by the grader. Everything the child sends back is plain data (JSON
and raw tensor bytes, see `wire`), judged by the suite in the parent.
"""
from __future__ import annotations

import json
import os
import sys


def main(config_json: str) -> None:
    config = json.loads(config_json)
    _die_with_parent()
    uid = config.get("uid")
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # drops every capability bubblewrap kept for this moment
    _set_limits(config["limits"])
    os.chdir(config["cwd"])
    if config.get("probe"):
        print("sandbox-ok", flush=True)
        os._exit(0)
    keep = {0, 1, 2, config["in"], config["out"]}
    os.closerange(3, min(keep - {0, 1, 2}))
    for fd in range(min(keep - {0, 1, 2}) + 1, 1024):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    sys.dont_write_bytecode = True
    Server(config["in"], config["out"]).serve()


def _die_with_parent() -> None:
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    except Exception:  # noqa: BLE001 - best effort; bubblewrap does both itself
        pass


def _set_limits(limits: dict) -> None:
    import resource

    def hard(kind, value):
        if value is None:
            return
        value = int(value)
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass

    hard(resource.RLIMIT_CORE, 0)
    hard(resource.RLIMIT_DATA, limits.get("data"))
    hard(resource.RLIMIT_AS, limits.get("as"))
    hard(resource.RLIMIT_NPROC, limits.get("nproc"))
    hard(resource.RLIMIT_FSIZE, limits.get("fsize"))
    cpu = limits.get("cpu")
    if cpu:
        try:  # SIGXCPU at the limit, SIGKILL a little later for code that ignores it
            resource.setrlimit(resource.RLIMIT_CPU, (int(cpu) + 1, int(cpu) + 6))
        except (ValueError, OSError):
            pass


class Server:
    def __init__(self, fd_in: int, fd_out: int):
        import random
        import traceback
        import types
        from collections import OrderedDict

        import numpy as np
        import torch

        from grader import probes
        from grader.course import Stage
        from grader.handle import CALLABLES, Implementation, LoadError, learner_location

        from . import protocol, wire

        self.random, self.traceback = random, traceback
        self.types, self.OrderedDict, self.np, self.torch = types, OrderedDict, np, torch
        self.Stage, self.Implementation, self.LoadError, self.location = Stage, Implementation, LoadError, learner_location
        self.CALLABLES = CALLABLES
        self.protocol, self.wire = protocol, wire
        self.fd_in, self.fd_out = fd_in, fd_out
        self.pid = os.getpid()
        self.table: dict[int, object] = {}
        self.pinned: set[int] = set()
        self.next_id = 1
        self.search_path: list = []
        # Taken before learner code runs, which may rebind torch.cuda.synchronize in this process.
        self.cuda_initialized, self.cuda_synchronize = torch.cuda.is_initialized, torch.cuda.synchronize
        self.classes: dict = {}  # class -> (id, its plain methods)
        self.classes_sent: set = set()
        # The trusted helpers, looked up now: learner code that rebinds grader.probes.X later
        # does not change what a probe runs.
        self.probes = {
            (fn.__module__, fn.__qualname__): fn
            for fn in vars(probes).values()
            if isinstance(fn, types.FunctionType) and fn.__module__ == probes.__name__
        }

    # -- the loop ---------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            data = self.protocol.read_frame(self.fd_in)
            if data is None or data == b"bye":
                os._exit(0)
            request = self.wire.load_request(data)
            for hid in request.get("release", ()):
                if hid not in self.pinned:
                    self.table.pop(hid, None)
            if request.get("begin"):
                self.begin_check()
            if request.get("seed") is not None:
                self.begin_check(request["seed"])
            self.mirror(request.get("ambient"))
            try:
                body = getattr(self, "op_" + request["op"])(request)
            except BaseException as exc:  # noqa: BLE001 - whatever learner code raised, reported as data
                body = {"error": self.describe(exc)}
            self.reply(request["seq"], body)

    def reply(self, seq: int, body: dict) -> None:
        if os.getpid() != self.pid:
            os._exit(0)  # a process the learner forked never speaks for the child
        body["seq"] = seq
        blobs = body.pop("~blobs", [])
        try:
            payload = self.wire.dump_answer(body, blobs)
        except BaseException as exc:  # noqa: BLE001 - e.g. out of memory while copying the answer
            payload = self.wire.dump_answer({"seq": seq, "error": self.describe(exc)}, [])
        self.protocol.write_all(self.fd_out, self.protocol.frame(payload))

    def mirror(self, ambient) -> None:
        """The parent's process-wide torch settings, as learner code would see them in-process."""
        if not ambient:
            return
        threads, grad, dtype = ambient
        torch = self.torch
        try:
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)
            torch.set_grad_enabled(grad)
            if dtype != torch.get_default_dtype():
                torch.set_default_dtype(dtype)
        except Exception:  # noqa: BLE001 - learner code may have broken torch in its own process
            pass

    def begin_check(self, seed: int = 0) -> None:
        """Seeds as the runner sets them before a check, and hypothesis before an example."""
        self.torch.manual_seed(seed)
        self.random.seed(seed)
        self.np.random.seed(seed)

    # -- requests ---------------------------------------------------------------------------

    def op_ping(self, request: dict) -> dict:
        return {"ok": None}

    def op_load(self, request: dict) -> dict:
        from pathlib import Path

        self.classes_sent.clear()  # the parent starts its table of classes afresh
        stage = self.Stage(**request["stage"])
        impl = self.Implementation(request["label"], stage, [Path(p) for p in request["search_path"]])
        self.search_path = impl.search_path
        try:
            impl.load(set(request["all_modules"]))
        except self.LoadError as exc:
            return {"load_error": str(exc)}
        modules = {}
        for name, module in impl._modules.items():
            modules[name] = self.new_id(module)
            self.pinned.add(modules[name])
        return {"modules": modules}

    def op_getattr(self, request: dict) -> dict:
        target = self.table[request["id"]]
        try:
            value = getattr(target, request["attr"])
        except AttributeError:
            return {"no_attribute": True}
        # A function or class defined in a learner module: the parent may reuse the handle.
        stable = isinstance(target, self.types.ModuleType) and isinstance(value, (self.types.FunctionType, type)) and (
            vars(target).get(request["attr"]) is value and "__getattr__" not in vars(target)
        )
        if isinstance(value, self.CALLABLES):
            return {"ok": self.handle(value, True), "stable": stable}
        return dict(self.answer(value), stable=stable)

    def op_setattr(self, request: dict) -> dict:
        setattr(self.table[request["id"]], request["attr"], self.resolve(request["value"]))
        return {"ok": None}

    def op_call(self, request: dict) -> dict:
        return self.run(self.table[request["id"]], request)

    def op_callattr(self, request: dict) -> dict:
        """`obj.method(...)` in one request: the lookup, then the call."""
        try:
            method = getattr(self.table[request["id"]], request["attr"])
        except AttributeError:
            return {"no_attribute": True}
        return self.run(method, request)

    def op_probe(self, request: dict) -> dict:
        fn = self.probes.get((request["module"], request["name"]))
        if fn is None:
            return {"grader_error": f"{request['module']}.{request['name']} is not a function of grader/probes.py"}
        return self.run(fn, request)

    def run(self, fn, request: dict) -> dict:
        args, kwargs = self.resolve(request["args"]), self.resolve(request["kwargs"])
        result = fn(*args, **kwargs)
        if self.cuda_initialized():
            self.cuda_synchronize()  # the answer comes when the GPU's work is done: the parent times it
        return self.answer(result)

    # -- learner objects <-> ids --------------------------------------------------------------

    def new_id(self, value) -> int:
        hid = self.next_id
        self.next_id += 1
        self.table[hid] = value
        return hid

    def handle(self, value, callable_: bool) -> dict:
        try:
            type_name = str(type(value).__name__)[:200]
        except Exception:  # noqa: BLE001
            type_name = "object"
        node = {"~": "h", "id": self.new_id(value), "callable": callable_, "type": type_name}
        if not callable_:
            self.add_methods(node, type(value))
        return node

    def add_methods(self, node: dict, cls: type) -> None:
        """The plain methods of the object's class (looking one up runs no learner code), sent
        once per class: the parent then sends `obj.method(...)` as one request."""
        if issubclass(cls, type) or cls.__getattribute__ is not object.__getattribute__:
            return
        known = self.classes.get(cls)
        if known is None:
            seen, methods = set(), []
            for klass in cls.__mro__:
                for name, attr in vars(klass).items():
                    if name not in seen:
                        seen.add(name)
                        if isinstance(attr, self.types.FunctionType) and not name.startswith("__"):
                            methods.append(name)
            known = self.classes[cls] = (len(self.classes) + 1, methods)
        tid, methods = known
        node["t"] = tid
        if tid not in self.classes_sent:
            self.classes_sent.add(tid)
            node["m"] = methods

    def resolve(self, value):
        """The grader's arguments, with Ref(id) replaced by the learner object it names."""
        if type(value) is self.protocol.Ref:
            return self.table[value.id]
        if type(value) is self.protocol.MethodRef:
            return getattr(self.table[value.id], value.attr)
        if type(value) in (list, tuple):
            return type(value)(self.resolve(v) for v in value)
        if type(value) is dict:
            return {k: self.resolve(v) for k, v in value.items()}
        return value

    def answer(self, value) -> dict:
        blobs: list = []
        return {"ok": self.encode(value, blobs), "~blobs": blobs}

    def encode(self, value, blobs: list):
        """Handle.to_plain, as wire nodes: learner objects become handles the parent builds."""
        kind = type(value)
        torch, np = self.torch, self.np
        if value is None or kind is bool or kind is int or kind is float or kind is str:
            return value
        if kind is list:
            return [self.encode(v, blobs) for v in value]
        if kind is tuple:
            return {"~": "t", "v": [self.encode(v, blobs) for v in value]}
        if isinstance(value, torch.Tensor):
            packed = self.wire.tensor_blob(value.detach().as_subclass(torch.Tensor))
            if packed is not None:
                node, blob = packed
                blobs.append(blob)
                return dict(node, **{"~": "T", "i": len(blobs) - 1})
        elif kind is torch.Size:
            return {"~": "t", "v": [int(d) for d in value]}
        elif kind in (dict, self.OrderedDict):
            keys, values = [], []
            for k, v in value.items():
                keys.append(self.encode(k, blobs))
                values.append(self.encode(v, blobs))
            return {"~": "d", "k": keys, "v": values}
        elif kind is complex:
            return {"~": "c", "v": [value.real, value.imag]}
        elif kind is bytes:
            blobs.append(value)
            return {"~": "b", "i": len(blobs) - 1}
        elif kind is torch.dtype:
            return {"~": "dt", "v": str(value)}
        elif kind is torch.device:
            return {"~": "dev", "v": str(value)}
        elif kind is np.ndarray and not value.dtype.hasobject:
            blobs.append(np.ascontiguousarray(value).tobytes())
            return {"~": "nd", "i": len(blobs) - 1, "dtype": value.dtype.str, "shape": list(value.shape)}
        elif isinstance(value, np.generic) and kind.__module__ == "numpy":
            return self.encode(value.item(), blobs)
        return self.handle(value, False)

    # -- what went wrong, as data -------------------------------------------------------------

    def describe(self, exc: BaseException) -> dict:
        import errno

        def safe(fn, default=""):
            try:
                return fn()
            except BaseException:  # noqa: BLE001 - a learner's __str__ may raise anything
                return default

        message = safe(lambda: str(exc))[:20000]
        kind = safe(lambda: type(exc).__name__, "Exception")
        info = {
            "type": kind,
            "module": safe(lambda: type(exc).__module__, ""),
            "bases": [c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins"],
            "message": message,
            "where": safe(lambda: self.location(exc, self.search_path)),
            "traceback": safe(lambda: "".join(self.traceback.format_exception(exc)))[-20000:],
            "not_implemented": isinstance(exc, NotImplementedError),
        }
        lowered = message.lower()
        if isinstance(exc, MemoryError) or "can't allocate memory" in lowered or "out of memory" in lowered:
            import re

            asked = re.search(r"tried to allocate (\d+) bytes", message) or re.search(r"tried to allocate ([\d.]+) ?([KMGT]i?B)", message)
            requested = None
            if asked and asked.lastindex == 1:
                requested = int(asked.group(1))
            elif asked:
                scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[asked.group(2)[0]]
                requested = int(float(asked.group(1)) * scale)
            info["memory"] = requested if requested is not None else -1
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            info["file_too_large"] = True
        # os.fork, subprocess and threads fail with EAGAIN at the process limit (RLIMIT_NPROC).
        last_line = safe(lambda: self.traceback.extract_tb(exc.__traceback__)[-1].line or "", "")
        if (isinstance(exc, BlockingIOError) and exc.errno == errno.EAGAIN and any(w in last_line for w in ("fork", "Popen", "spawn", "start", "system", "run("))) or (
            isinstance(exc, RuntimeError) and "can't start new thread" in lowered
        ):
            info["processes"] = True
        return info
