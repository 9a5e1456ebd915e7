"""ARRAY values of CONTRACT §6: nested JSON lists or base64 blocks, in and out."""

from __future__ import annotations

import base64
import math
from typing import Any, Literal

import numpy as np
import pybase64
from pydantic import BaseModel, Field

from nncards.contract import list_walk

DTYPES = ("float16", "bfloat16", "float32", "float64", "int32", "int64", "bool")
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class Base64Array(BaseModel):
    """Raw C-order little-endian bytes of an array, base64-encoded."""

    dtype: Literal[DTYPES] = Field(description="Element type.")
    shape: list[int] = Field(description="Dimensions, C order.")
    base64: str = Field(description="The bytes, base64-encoded.")


class ArrayError(ValueError):
    """An array that cannot serve where it was given: `array_invalid` with this message."""


def _numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name).newbyteorder("<")


def _finite_tokens(value: Any) -> Any:
    if isinstance(value, list):
        return [_finite_tokens(v) for v in value]
    if isinstance(value, str):
        if value in _NON_FINITE:
            return _NON_FINITE[value]
        raise ArrayError(f"{value!r} is not a number")
    if value is None:
        raise ArrayError("null is not a number")
    return value


def count_elements(value: Any) -> int:
    """Elements of an ARRAY without decoding it, for the per-request limit."""
    if isinstance(value, np.ndarray):
        return value.size
    if isinstance(value, dict):
        return math.prod(value.get("shape") or [0]) if isinstance(value.get("shape"), list) else 0
    if isinstance(value, list):
        return sum(count_elements(v) for v in value) if value and isinstance(value[0], list) else len(value)
    return 1


def b64decode(text: str | bytes | memoryview) -> bytearray:
    """Strict base64 (`base64.b64decode(text, validate=True)`'s rules and errors) into a writable buffer.

    pybase64 decodes in SIMD, 30x faster than the standard library, but it is stricter: it refuses
    padding the standard library lets pass (`QUJD=`) and says only "Non-base64 digit found". What it
    refuses is decoded again by the standard library, whose answer (bytes, or the error) stands."""
    try:
        return pybase64.b64decode_as_bytearray(text, validate=True)
    except ValueError:  # binascii.Error, or a str that is not ASCII
        return bytearray(base64.b64decode(text, validate=True))


def decode_block(dtype_name: str, shape: list[int], text: str | bytes | memoryview) -> np.ndarray:
    """The array of a base64 block; `ArrayError` when its text or its length does not fit."""
    dtype = _numpy_dtype(dtype_name)
    try:
        raw = b64decode(text)
    except ValueError as exc:
        raise ArrayError(f"base64 is not valid: {exc}") from None
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected or any(d < 0 for d in shape):
        raise ArrayError(f"shape {shape} of {dtype_name} needs {expected} bytes, got {len(raw)}")
    # The decoded buffer is the array's own: no copy when the bytes are already in native order.
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


GRID_DIMENSIONS = 32  # nested lists deeper than this are left to NumPy


def float_grid(value: Any) -> np.ndarray | None:
    """The float64 array `np.array(value)` makes of nested lists that open with a Python float,
    converted by nncards' walker (`list_walk`) or else pyarrow; None when neither can tell that
    NumPy would make that array.

    The walker takes exactly lists down to exactly floats of one full shape: benchmarks/runs.py's
    (2048, 32, 32, 3) grid in 39 ms against pyarrow's 163 ms (in process, medians of 9, load 1.3).

    NumPy converts nested lists element by element after walking them once for their shape and
    type: 0.39 s for a (2048, 32, 32, 3) grid, against pyarrow's 0.16 s (each list's length is
    checked on pyarrow's offsets, in NumPy, after). pyarrow, told to make float64, takes floats,
    and integers and booleans as NumPy does beside a float; it refuses (and None follows) what NumPy
    would not make a float64 array of: strings, integers past 2**53, other objects. A null (None)
    becomes one of pyarrow's nulls, and gives None too. The one value read otherwise is a NumPy
    long double among the floats (no JSON text makes one): pyarrow rounds it to float64, where
    NumPy would make the whole array of long doubles."""
    shape, element = [], value
    while type(element) is list and element and len(shape) < GRID_DIMENSIONS:
        shape.append(len(element))
        element = element[0]
    if type(element) is not float:
        return None
    walked = list_walk.floats(value, shape)
    if walked is not None:
        return walked
    import pyarrow  # here, not at the top: its 27 MiB stay out of the server, which never gets lists

    nested = pyarrow.float64()
    for _ in shape[1:]:
        nested = pyarrow.large_list(nested)
    try:
        level = pyarrow.array(value, type=nested)
    except (pyarrow.ArrowException, TypeError, ValueError, OverflowError):
        return None
    for size in shape[1:]:  # each list's length, level by level
        if level.null_count or not (np.diff(level.offsets.to_numpy()) == size).all():
            return None
        level = level.flatten()
    if level.null_count:
        return None
    return level.to_numpy().reshape(shape)


def decode(value: Any) -> np.ndarray:
    """An ARRAY (nested lists or a base64 block) as a NumPy array; a NumPy array is taken as it is."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, dict):
        block = Base64Array.model_validate(value)
        return decode_block(block.dtype, block.shape, block.base64)
    grid = float_grid(value)
    if grid is not None:
        return grid
    try:
        # NumPy reads plain numbers in C. Only a list holding something else (the strings of
        # non-finite numbers, or stray values) is walked element by element, in Python.
        array = np.array(value)
        if array.dtype.kind not in "biuf":
            array = np.array(_finite_tokens(value))
    except ValueError as exc:
        raise ArrayError(f"ragged or malformed nested list: {str(exc).splitlines()[0]}") from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ArrayError("the nested list must hold only numbers or only booleans")
    return array


def cast(array: np.ndarray, dtype_name: str) -> np.ndarray:
    """The array as `dtype_name`, allowed within a kind (ints to floats, floats to floats).

    An array already of that type is returned as it is, not copied (a run's 24 MiB cost 2-50 ms):
    it may be read-only, mapped from a request's file, and the steps only read their arrays."""
    target = _numpy_dtype(dtype_name)
    kind, to = array.dtype.kind, target.kind
    if target.name == "bfloat16":
        to = "f"
    if array.dtype.name == "bfloat16":
        kind = "f"
    allowed = kind == to or (kind in "iu" and to in "iuf") or (kind == "b" and to == "b")
    if not allowed:
        raise ArrayError(f"values of type {array.dtype.name} cannot be cast to {dtype_name}")
    return array.astype(target.newbyteorder("=") if target.byteorder != "|" else target, copy=False)


def encode(array: Any, as_base64: bool = False) -> Any:
    array = np.asarray(array)
    if as_base64:
        name = array.dtype.name
        little = array.astype(array.dtype.newbyteorder("<")) if array.dtype.byteorder not in "|<" else array
        return {"dtype": name, "shape": list(array.shape),
                # As bytes without a copy (bfloat16 has no buffer format of its own).
                "base64": pybase64.b64encode(np.ascontiguousarray(little).reshape(-1).view(np.uint8)).decode()}
    if array.dtype.kind == "f" or array.dtype.name == "bfloat16":
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            text = np.where(np.isnan(array), "NaN", np.where(array > 0, "Infinity", "-Infinity"))
            return np.where(np.isfinite(array), array.astype(object), text.astype(object)).tolist()
    return array.tolist()
