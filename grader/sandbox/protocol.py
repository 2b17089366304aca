"""What the grader and the sandboxed child say to each other, and how it is framed.

Each message is an 8-byte big-endian length, then the payload. The two directions are not
alike, because only one side is trusted:

- grader -> child: a pickle (the grader is trusted), with tensors as raw blobs beside it.
  Learner objects are named by `Ref(id)`.
- child -> grader: JSON and raw byte blobs (see `wire`), never a pickle: the grader reads
  plain data only, and a learner object comes back as a small node naming its id in the
  child's table.

This module imports neither torch nor numpy, so the child can start before either is loaded.
"""
from __future__ import annotations

import struct

HEADER = struct.Struct(">Q")


class Ref:
    """A learner object in the child's table, as the grader names it in a request."""

    __slots__ = ("id",)

    def __init__(self, id: int):
        self.id = id

    def __reduce__(self):
        return (Ref, (self.id,))

    def __repr__(self) -> str:
        return f"Ref({self.id})"


class MethodRef:
    """`obj.method` of a learner object in the child's table, looked up when it is used."""

    __slots__ = ("id", "attr")

    def __init__(self, id: int, attr: str):
        self.id, self.attr = id, attr

    def __reduce__(self):
        return (MethodRef, (self.id, self.attr))


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def read_exactly(fd: int, n: int) -> bytes:
    """Blocking read of n bytes (the child's side); b'' when the other end is gone."""
    import os

    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return b""
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> bytes | None:
    header = read_exactly(fd, HEADER.size)
    if not header:
        return None
    (length,) = HEADER.unpack(header)
    body = read_exactly(fd, length)
    if len(body) != length:
        return None
    return body


def write_all(fd: int, data: bytes) -> None:
    import os

    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
