"""The bytes on the pipes: requests from the grader, answers from the child.

Answers (child -> grader) are untrusted, so they are never unpickled. An answer is a JSON
document (read by the json module, which builds only dicts, lists, strings and numbers)
followed by raw byte blobs: the data of tensors, arrays and bytes objects, rebuilt by the
grader with `torch.frombuffer` for an allowlisted numeric dtype and a shape that must match
the blob's length exactly. Every other kind of value in the JSON is a small tagged node:

    {"~": "t", "v": [...]}                 tuple
    {"~": "d", "k": [...], "v": [...]}     dict (any plain keys, in order)
    {"~": "T", "i": 0, "dtype": "float32", "shape": [2, 3], "device": "cpu"}   tensor
    {"~": "h", "id": 7, "callable": false, "type": "Tokenizer"}              learner object

This does the job of `torch.load(weights_only=True)` (plain data only, no code runs while
reading) at a fraction of its cost per call, which matters when a check makes hundreds.

Requests (grader -> child) come from the trusted side and are pickled, with plain CPU
tensors carried as raw blobs beside the pickle (pickling a tensor would run torch.save).
"""
from __future__ import annotations

import io
import json
import pickle
import struct

import torch

LENGTH = struct.Struct(">I")
TAG = "~"

DTYPES = {
    name: getattr(torch, name)
    for name in (
        "float32", "float64", "float16", "bfloat16", "complex64", "complex128",
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool",
    )
    if isinstance(getattr(torch, name, None), torch.dtype)
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
ITEMSIZE = {dtype: torch.empty((), dtype=dtype).element_size() for dtype in DTYPES.values()}


class Unreadable(Exception):
    """An answer that is not well-formed plain data."""


# --- tensors as raw bytes (both directions) ---------------------------------------------------


def tensor_blob(tensor: torch.Tensor) -> tuple[dict, bytes] | None:
    """(description, raw bytes) of a dense tensor of a plain dtype; None for anything else."""
    name = DTYPE_NAMES.get(tensor.dtype)
    if name is None or tensor.layout != torch.strided or tensor.is_quantized:
        return None
    device = str(tensor.device)
    node = {"dtype": name, "shape": list(tensor.shape), "device": device}
    if tensor.device.type == "meta":
        return node, b""
    flat = tensor.detach().resolve_conj().resolve_neg().reshape(-1)
    if flat.device.type != "cpu":
        flat = flat.cpu()
    if flat.numel() == 0:
        return node, b""
    return node, flat.contiguous().view(torch.uint8).numpy().tobytes()


def tensor_from_blob(node: dict, blob) -> torch.Tensor:
    """The tensor a (description, raw bytes) pair stands for; Unreadable if they do not agree."""
    dtype = DTYPES.get(node.get("dtype")) if isinstance(node.get("dtype"), str) else None
    shape = node.get("shape")
    device = node.get("device", "cpu")
    if dtype is None or type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape) or type(device) is not str:
        raise Unreadable("a malformed tensor")
    numel = 1
    for d in shape:
        numel *= d
    itemsize = ITEMSIZE[dtype]
    if device == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    if numel * itemsize != len(blob):
        raise Unreadable("a tensor whose data does not match its shape")
    if numel == 0:
        tensor = torch.empty(shape, dtype=dtype)
    else:
        tensor = torch.frombuffer(bytearray(blob), dtype=torch.uint8).view(dtype).reshape(shape)
    if device != "cpu":
        try:
            tensor = tensor.to(device)
        except (RuntimeError, ValueError):
            pass  # a device this process does not have: the values still count
    return tensor


# --- answers: child -> grader -----------------------------------------------------------------


def dump_answer(body: dict, blobs: list[bytes]) -> bytes:
    body = dict(body, **{"~blobs": [len(b) for b in blobs]})
    head = json.dumps(body, separators=(",", ":")).encode("ascii")  # ASCII: lone surrogates travel as escapes
    return b"".join([LENGTH.pack(len(head)), head, *blobs])


def load_answer(payload: bytes) -> tuple[dict, list[memoryview]]:
    if len(payload) < LENGTH.size:
        raise Unreadable("a truncated answer")
    (size,) = LENGTH.unpack_from(payload)
    try:
        body = json.loads(payload[LENGTH.size : LENGTH.size + size].decode("ascii"))
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise Unreadable(f"unreadable JSON ({type(exc).__name__})") from None
    if type(body) is not dict:
        raise Unreadable("an answer that is not a dict")
    lengths = body.pop("~blobs", [])
    if type(lengths) is not list or not all(type(n) is int and n >= 0 for n in lengths):
        raise Unreadable("a malformed blob table")
    view = memoryview(payload)
    offset = LENGTH.size + size
    if offset + sum(lengths) != len(payload):
        raise Unreadable("an answer of the wrong length")
    blobs = []
    for n in lengths:
        blobs.append(view[offset : offset + n])
        offset += n
    return body, blobs


# --- requests: grader -> child ----------------------------------------------------------------


class _RequestPickler(pickle.Pickler):
    def __init__(self, file, blobs: list):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.blobs = blobs

    def persistent_id(self, obj):
        if type(obj) is torch.Tensor and obj.device.type == "cpu":
            packed = tensor_blob(obj)
            if packed is not None:
                node, blob = packed
                self.blobs.append(blob)
                return ("tensor", node, len(self.blobs) - 1, bool(obj.requires_grad))
        return None


class _RequestUnpickler(pickle.Unpickler):
    def __init__(self, file, blobs: list):
        super().__init__(file)
        self.blobs = blobs

    def persistent_load(self, pid):
        kind, node, index, requires_grad = pid
        tensor = tensor_from_blob(node, self.blobs[index])
        return tensor.requires_grad_(True) if requires_grad else tensor


def dump_request(fields: dict) -> bytes:
    blobs: list[bytes] = []
    buffer = io.BytesIO()
    _RequestPickler(buffer, blobs).dump(fields)
    head = buffer.getvalue()
    return b"".join([LENGTH.pack(len(head)), LENGTH.pack(len(blobs)), *(LENGTH.pack(len(b)) for b in blobs), head, *blobs])


def load_request(payload: bytes) -> dict:
    view = memoryview(payload)
    (size,) = LENGTH.unpack_from(view, 0)
    (count,) = LENGTH.unpack_from(view, 4)
    lengths = [LENGTH.unpack_from(view, 8 + 4 * i)[0] for i in range(count)]
    offset = 8 + 4 * count
    head = view[offset : offset + size]
    offset += size
    blobs = []
    for n in lengths:
        blobs.append(view[offset : offset + n])
        offset += n
    return _RequestUnpickler(io.BytesIO(head), blobs).load()
