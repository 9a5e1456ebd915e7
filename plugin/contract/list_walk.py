"""Nested Python lists of Python floats into a float64 array by nncards' own C++ walker
(`list_walk.cc`), for `arrays.float_grid`.

benchmarks/runs.py's (2048, 32, 32, 3) grid of lists took pyarrow 0.16 s (about 25 ns a value);
this walker reads each float's double where it lies, with the GIL held (it reads Python objects).
It is sure only of the common case: exactly `list` down to exactly `float`, of one full shape.
A subclass of list or float may answer NumPy's sequence and number protocols its own way, and an
int or a bool beside floats is read by NumPy's rules (an int past 2**53, an object array): these,
a ragged list and anything else give None, and pyarrow or NumPy answer as before.

The library is built with `nncards.native` on first use, against this Python's headers; until it is
loaded, and where it cannot be built (no compiler, no Python.h), `floats` gives None.
"""

from __future__ import annotations

import ctypes
import sys
import sysconfig
from pathlib import Path

import numpy as np

from nncards import native

SOURCE = Path(__file__).with_name("list_walk.cc")
FLAGS = ("-shared", "-fPIC", "-O2", "-std=c++17", "-w")


def _include() -> str:
    return sysconfig.get_paths()["include"]


def library_path() -> Path:
    # The list and float layouts the macros read are this Python's: its version and headers name it.
    return native.library_path("list_walk", (SOURCE.read_bytes(), " ".join(FLAGS).encode(),
                                             _include().encode(), sys.version.encode()))


def _command(output: str) -> list[str]:
    return [native.compiler(), *FLAGS, f"-I{_include()}", str(SOURCE), "-o", output]


def _load(path: str) -> ctypes.PyDLL:
    loaded = ctypes.PyDLL(path)  # keeps the GIL during the call
    loaded.nncards_float_lists.restype = ctypes.c_int
    loaded.nncards_float_lists.argtypes = [ctypes.py_object, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    return loaded


# `WALKER.ready()` gives the library once loaded, starting its build otherwise: a caller never
# waits for a compiler (pyarrow serves meanwhile).
WALKER = native.OnFirstUse("list-walk", library_path, _command, _load)


def floats(value: list, shape: list[int]) -> np.ndarray | None:
    """`np.array(value)` (float64) when `value` is exactly lists of `shape` down to exactly
    floats; None when the walker is not loaded or not sure."""
    walker = WALKER.ready()
    if walker is None:
        return None
    try:
        grid = np.empty(shape, np.float64)
    except (MemoryError, ValueError):  # a shape read from the first lists of lists repeated: too big
        return None
    sizes = np.array(shape, np.int64)
    return grid if walker.nncards_float_lists(value, sizes.ctypes.data, len(shape), grid.ctypes.data) else None
