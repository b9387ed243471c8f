"""The bridge to the Go extension: errors, Arrow C Data structs, jobs.

Everything that touches the gopy module goes through here, so that the rest
of the package sees Python values and densessm.Error only.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import threading
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from ._gobind import pybind as go  # noqa: F401  (the gopy module)

# How long a job's Poll waits in Go before returning to the interpreter,
# which is how soon Ctrl-C (KeyboardInterrupt) is seen during a long call.
POLL_MS = 100


# timing.seconds: Go's wall time of the last job this thread waited for
# (bench/python_overhead.py subtracts it from the call's to get what the
# crossing costs).
timing = threading.local()


class Error(RuntimeError):
    """An error from densessm's Go code; str(e) is the Go message."""


class _Nil:
    """What gopy takes for a nil pointer: the handle 0 (a handle argument's
    wrapper passes its .handle)."""

    handle = 0


NIL = _Nil()


def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Calls a gopy function, turning the RuntimeError gopy raises into Error."""
    try:
        return fn(*args)
    except RuntimeError as e:
        if isinstance(e, Error):
            raise
        raise Error(str(e)) from None


class _ArrowSchema(ctypes.Structure):
    """struct ArrowSchema of the Arrow C Data Interface."""


class _ArrowArray(ctypes.Structure):
    """struct ArrowArray of the Arrow C Data Interface."""


_ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))), ("dictionary", ctypes.POINTER(_ArrowSchema)),
    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowSchema))), ("private_data", ctypes.c_void_p),
]
_ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)), ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.POINTER(_ArrowArray)),
    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowArray))), ("private_data", ctypes.c_void_p),
]


class CArray:
    """An ArrowArray and an ArrowSchema struct (C Data Interface) for Go to
    fill (export) or to take (import), with their addresses."""

    __slots__ = ("array", "schema")

    def __init__(self) -> None:
        self.array = _ArrowArray()  # zeroed: release is NULL
        self.schema = _ArrowSchema()

    @property
    def addrs(self) -> tuple[int, int]:
        return ctypes.addressof(self.array), ctypes.addressof(self.schema)

    @classmethod
    def of(cls, arr: pa.Array) -> "CArray":
        """Exports arr into new structs, for Go to import (it moves them)."""
        c = cls()
        arr._export_to_c(*c.addrs)
        return c

    def take(self) -> pa.Array:
        """Imports what Go exported (pyarrow then owns it)."""
        return pa.Array._import_from_c(*self.addrs)

    def release(self) -> None:
        """Releases what nobody took (after a failed call)."""
        for s in (self.array, self.schema):
            if s.release:
                s.release(ctypes.pointer(s))


def ids_array(ids: Any) -> tuple[pa.Array, tuple[int, ...]]:
    """Token ids (int, list, nested lists, NumPy array) as a flat int32
    Arrow array (no copy for a C-contiguous int32 array) and their shape."""
    try:
        a = np.asarray(ids)
    except ValueError as e:  # ragged nested lists that ragged() did not take
        raise Error(f"ids: want a sequence, a batch of sequences of equal length, or a list of sequences of "
                    f"different lengths ({e})") from None
    if a.dtype.kind not in "iu" and a.size > 0:
        raise Error(f"ids: want integers, got {a.dtype}")
    if a.dtype != np.int32:
        if a.size and (a.min() < 0 or a.max() > np.iinfo(np.int32).max):
            raise Error("ids: out of the range of token ids")
        a = a.astype(np.int32)
    return pa.array(np.ascontiguousarray(a).reshape(-1), type=pa.int32()), a.shape


def ragged(ids: Any) -> list[Any] | None:
    """The sequences of ids when ids is a list (or tuple) of sequences of
    different lengths, else None (one sequence, or an equal-length batch,
    which ids_array takes)."""
    if isinstance(ids, np.ndarray) or not isinstance(ids, (list, tuple)) or len(ids) < 2:
        return None
    lens = set()
    for seq in ids:
        try:
            if isinstance(seq, (str, bytes)) or np.ndim(seq) != 1:
                return None
        except ValueError:  # itself ragged: ids_array says what is wrong
            return None
        lens.add(len(seq))
    return list(ids) if len(lens) > 1 else None


def ragged_array(seqs: list[Any]) -> tuple[pa.Array, list[int]]:
    """Sequences of different lengths as one flat int32 Arrow array (laid
    end to end) and their lengths, which is how they cross into Go."""
    parts, lens = [], []
    for i, seq in enumerate(seqs):
        arr, shape = ids_array(seq)
        if len(shape) != 1 or shape[0] == 0:
            raise Error(f"ids: sequence {i} has shape {shape}: want a non-empty sequence of token ids")
        parts.append(arr.to_numpy(zero_copy_only=True))
        lens.append(shape[0])
    return pa.array(np.concatenate(parts), type=pa.int32()), lens


def go_ids(ids: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Calls fn(idsArray, idsSchema, *args) with ids exported for Go."""
    arr, _ = ids_array(ids)
    c = CArray.of(arr)
    try:
        return call(fn, *c.addrs, *args)
    finally:
        c.release()


def float_array(arr: pa.Array, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 NumPy view of an Arrow array Go exported (no copy)."""
    return arr.to_numpy(zero_copy_only=True).reshape(shape)


def drive(job: Any, on_event: Callable[[dict], None] | None = None) -> Any:
    """Waits for a Go job, handing its events to on_event, and returns its
    result. Ctrl-C (or an exception from on_event) cancels the job, waits
    for it to stop, and propagates; an error of the job raises Error."""
    with contextlib.closing(events(job)) as evs:
        for ev in evs:
            if ev["kind"] == "result":
                return ev["result"]
            if on_event is not None:
                on_event(ev)


def events(job: Any) -> Iterator[dict]:
    """Yields a Go job's events as they come, then its result as
    {"kind": "result", "result": ...}. Closing the generator (or Ctrl-C)
    cancels the job."""
    try:
        while True:
            r = json.loads(call(job.Poll, POLL_MS))
            yield from r["events"]
            if r["done"]:
                timing.seconds = r.get("seconds", 0.0)
                yield {"kind": "result", "result": r.get("result")}
                return
    finally:
        stop(job)


def stop(job: Any) -> None:
    """Cancels a job and waits until it has stopped (it may write into
    structs the caller is about to drop)."""
    if job.Done():
        return
    job.Cancel()
    while not job.Done():
        try:
            job.Poll(POLL_MS)
        except RuntimeError:
            pass
