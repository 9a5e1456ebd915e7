"""Long JSON arrays of numbers read into NumPy by nncards' own C++ reader (`number_grid.cc`), on
threads that let the GIL go.

run_json parses a long array's text in pieces of rows; simdjson holds the GIL while it parses, so
the 126 MB of a large run request took one core and the event loop waited. This reader is plain
C called through ctypes, which lets the GIL go for the call: the pieces are read on as many threads
as the process may use cores, straight into one NumPy buffer (each group of pieces counts its
values first, a comma each, so that every group knows where its values go).

It reads only what it is sure of (JSON's number grammar exactly, a full grid of one shape, no
empty array, integers within int64, floats within the doubles' range) and gives values as the old
way does, bit for bit: int64 when every value is an integer, float64 otherwise (or, when asked,
that float64 array's cast to float32, each value rounded as it is read). Anything else
gives None, and run_json reads the array the old way, whose answers and errors are the contract.

The same library reads a body's structure faster than Python's bytes methods: it drops the
numbers and white space of a body as it arrives (`without_numbers`, for run_json.SkeletonReader)
and counts how deep the structure nests (`nesting_depth`, for the server's BodyLimit).

The library is built with `nncards.native` on first use (a server starts that as it starts): until
it is loaded, and where it cannot be built (no compiler), these functions give None and their
callers keep their Python ways (simdjson, `bytes.translate`, NumPy).
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nncards import native

SOURCE = Path(__file__).with_name("number_grid.cc")
# -march=native: the library runs where it was built (the CPU's features are in its name);
# -mprefer-vector-width=512: where the CPU has AVX-512, the compiler's own vector loops use all of
# it (g++ 12 keeps to 256 bits by default): benchmarks/runs.py's 6.3 M numbers read as float32 in
# 141-146 ms of CPU instead of 169-175 on an AVX-512 Xeon, the same bits; no effect elsewhere; no
# -ffast-math or contraction: every conversion must round as the old way's.
FLAGS = ("-shared", "-fPIC", "-O3", "-march=native", "-mprefer-vector-width=512", "-std=c++17",
         "-ffp-contract=off", "-w")
MAX_DIMENSIONS = 32  # C++ kMaxDimensions: a row has fewer
GROUP_BYTES = 8 * 2**20  # the pieces a thread reads in one call (more calls than threads: a busy core lags)


def library_path() -> Path:
    return native.library_path("number_grid", (SOURCE.read_bytes(), " ".join(FLAGS).encode()))


def _command(output: str) -> list[str]:
    return [native.compiler(), *FLAGS, str(SOURCE), "-o", output]


def _load(path: str) -> ctypes.CDLL:
    loaded = ctypes.CDLL(path)
    loaded.nncards_nesting_depth.restype = ctypes.c_int64
    loaded.nncards_nesting_depth.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    loaded.nncards_drop_numbers.restype = ctypes.c_int64
    loaded.nncards_drop_numbers.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    loaded.nncards_grid_values.restype = ctypes.c_int64
    loaded.nncards_grid_values.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    loaded.nncards_grid_rows.restype = ctypes.c_int
    loaded.nncards_grid_rows.argtypes = [
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
        ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_int32)]
    return loaded


# The reader: `READER.get()` builds or loads it (None where it cannot be); `READER.ready()` gives it
# only once loaded (its build started if nothing had started it: a request never waits for a compiler).
READER = native.OnFirstUse("number-grid", library_path, _command, _load)
library, ready, prepare_in_background = READER.get, READER.ready, READER.prepare_in_background


@functools.cache
def _threads() -> ThreadPoolExecutor:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return ThreadPoolExecutor(max_workers=cores, thread_name_prefix="nncards-numbers")


class _Rows:
    """What the reader says of a group of rows."""

    def __init__(self) -> None:
        self.rows, self.dimensions = ctypes.c_int64(), ctypes.c_int32()
        self.shape, self.integers_only = (ctypes.c_int64 * MAX_DIMENSIONS)(), ctypes.c_int32()

    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[:self.dimensions.value])


def read(body: bytes | bytearray, bounds: list[tuple[int, int]], as_float32: bool = False) -> np.ndarray | None:
    """The array whose rows' texts lie at `bounds` in the body (pieces of rows, one comma between
    each and the next), as `run_json` would make it (`as_float32`: a float64 array as float32, its
    values rounded as NumPy casts them, read so at once); None when the reader is not loaded or not
    sure of the text."""
    reader = ready()
    if reader is None:
        return None
    groups, first = [], 0
    while first < len(bounds):  # consecutive pieces up to GROUP_BYTES, read as one text
        last = first
        while last + 1 < len(bounds) and bounds[last + 1][1] - bounds[first][0] <= GROUP_BYTES:
            last += 1
        groups.append((bounds[first][0], bounds[last][1]))
        first = last + 1
    text = np.frombuffer(body, np.uint8)  # its address, for the calls; keeps the body's buffer exported
    address = text.ctypes.data
    counts = list(_threads().map(lambda group: reader.nncards_grid_values(address + group[0], group[1] - group[0]),
                                 groups))
    offsets = np.cumsum([0, *counts]).tolist()

    def into(values: np.ndarray) -> list[_Rows] | None:
        def group_rows(number: int) -> _Rows | None:
            start, end = groups[number]
            found = _Rows()
            target = values.ctypes.data + offsets[number] * values.itemsize
            doubles, floats, integers = (target if values.dtype == kind else None
                                         for kind in (np.float64, np.float32, np.int64))
            done = reader.nncards_grid_rows(address + start, end - start, doubles, floats, integers, counts[number],
                                            found.rows, found.dimensions, found.shape, found.integers_only)
            return found if done else None

        read_groups = list(_threads().map(group_rows, range(len(groups))))
        return None if None in read_groups else read_groups

    values = np.empty(offsets[-1], np.float32 if as_float32 else np.float64)
    found = into(values)
    if found is None or len({rows.row_shape() for rows in found}) != 1:
        return None
    if all(rows.integers_only.value for rows in found):
        values = np.empty(offsets[-1], np.int64)
        if into(values) is None:
            return None
    shape = (sum(rows.rows.value for rows in found), *found[0].row_shape())
    return values.reshape(shape) if values.size == math.prod(shape) else None


def without_numbers(text: bytes | bytearray, start: int, end: int, scratch: bytearray) -> bytes | None:
    """`text[start:end]` without the bytes of numbers and white space, as
    `.translate(None, run_json.NUMBER_AND_SPACE)` gives it, three to four times faster (a run body's
    skeleton is made on the event loop as the body arrives); `scratch`, a buffer the caller keeps,
    grows to the longest text. None when the reader is not loaded."""
    reader = ready()
    if reader is None:
        return None
    if len(scratch) < end - start:
        scratch.extend(bytes(end - start - len(scratch)))
    with memoryview(scratch) as out:
        kept = reader.nncards_drop_numbers(np.frombuffer(text, np.uint8).ctypes.data + start, end - start,
                                           np.frombuffer(out, np.uint8).ctypes.data)
        return bytes(out[:kept])


def nesting_depth(structure: bytes) -> int | None:
    """How deep arrays and objects nest in a skeleton (its strings emptied), as the server's
    `nesting_depth` counts it; None when the reader is not loaded."""
    reader = ready()
    if reader is None:
        return None
    return reader.nncards_nesting_depth(np.frombuffer(structure, np.uint8).ctypes.data, len(structure))
