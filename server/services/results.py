"""RUN RESULT arrays as `.npy` files: written where the run executed, streamed to clients.

A finished run's arrays (outputs, weights) leave its RUN RESULT as it is stored: each becomes
a reference `{"dtype", "shape", "file"}` to a `.npy` file in the run's folder, and the database
keeps that small skeleton. Reading a result walks the skeleton and writes its JSON piece by
piece, each array read from its file in chunks, so a large result is never held whole in the
server, and every piece is made on a worker thread, never on the event loop.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pybase64

from nncards.contract import arrays
from nncards.contract.errors import ErrorCode
from nncards.contract.run import RunResult, RunStatus

REFERENCE_KEYS = {"dtype", "shape", "file"}
INLINE_KEYS = {"dtype", "shape", "base64"}
PIECE_BYTES = 256 * 2**10  # one piece of a streamed answer
MAPPED_ELEMENTS = 2**16  # a stored array of more elements is mapped, not read whole
# bfloat16 has no .npy type of its own: its bits are stored as uint16 and read back as bfloat16.
STORED_AS = {"bfloat16": "<u2"}


def _blocks(value: Any) -> Iterator[dict]:
    if isinstance(value, dict):
        if value.keys() == INLINE_KEYS:
            yield value
        else:
            for item in value.values():
                yield from _blocks(item)
    elif isinstance(value, list):
        for item in value:
            yield from _blocks(item)


def _elements(block: dict) -> int:
    return math.prod(block["shape"])


def write_arrays(result: RunResult, folder: Path, max_elements: int) -> tuple[RunResult, int]:
    """The result with its arrays moved to `.npy` files in `folder`, and the bytes written.

    A result holding more than `max_elements` array elements, or one whose files cannot be
    written (a full disk), becomes a failed result with its own code; nothing is left behind.
    """
    data = result.as_json()
    blocks = list(_blocks(data))
    elements = sum(_elements(b) for b in blocks)
    if elements > max_elements:
        return RunResult.stopped(result.run_id, RunStatus.FAILED, ErrorCode.RESULT_TOO_LARGE,
                                 f"The run's result holds {elements} array elements, more than the server's "
                                 f"limit of {max_elements}; it was not kept."), 0
    written = 0
    try:
        if blocks:
            folder.mkdir(parents=True, exist_ok=True)
        for number, block in enumerate(blocks):
            raw = pybase64.b64decode(block.pop("base64"))  # our own workers' text: no need to validate it
            name = f"{number}.npy"
            stored = np.frombuffer(raw, STORED_AS.get(block["dtype"], np.dtype(block["dtype"]).newbyteorder("<")))
            np.save(folder / name, stored.reshape(block["shape"]), allow_pickle=False)
            block["file"] = name
            written += (folder / name).stat().st_size
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return RunResult.stopped(result.run_id, RunStatus.FAILED, ErrorCode.STORAGE_FAILED,
                                 f"The run's result could not be stored (is the disk full?): "
                                 f"{exc.strerror or exc}."), 0
    return RunResult.model_validate(data), written


def _load(folder: Path, block: dict) -> np.ndarray:
    if block.keys() == INLINE_KEYS:  # kept inline by an earlier version of the server
        return arrays.decode(block)
    # A large array is mapped, read piece by piece as it is streamed; a small one is read whole
    # (a mapping costs more than reading a layer's few KiB).
    mapped = _elements(block) > MAPPED_ELEMENTS
    array = np.load(folder / block["file"], mmap_mode="r" if mapped else None, allow_pickle=False)
    if block["dtype"] == "bfloat16":
        import ml_dtypes

        array = array.view(ml_dtypes.bfloat16)
    return array


def with_arrays(value: Any, folder: Path) -> Any:
    """`value` (a part of a stored RUN RESULT) with each array reference read from `folder`."""
    if isinstance(value, dict):
        if value.keys() in (REFERENCE_KEYS, INLINE_KEYS):
            return np.array(_load(folder, value))
        return {key: with_arrays(item, folder) for key, item in value.items()}
    if isinstance(value, list):
        return [with_arrays(item, folder) for item in value]
    return value


def _rows_per_piece(array: np.ndarray) -> int:
    row_bytes = max(1, array[0].nbytes if array.ndim and len(array) else array.nbytes)
    return max(1, PIECE_BYTES // row_bytes // 4)  # a number's text is a few times its bytes


def _array_pieces(array: np.ndarray, as_base64: bool, dtype: str) -> Iterator[bytes]:
    if as_base64:
        yield f'{{"dtype":"{dtype}","shape":{json.dumps(list(array.shape))},"base64":"'.encode()
        flat = np.ascontiguousarray(array).reshape(-1)
        little = flat.view(np.uint16) if dtype in STORED_AS else flat.astype(flat.dtype.newbyteorder("<"), copy=False)
        raw = little.view(np.uint8)
        step = PIECE_BYTES - PIECE_BYTES % 3  # whole base64 quanta: the pieces join into one text
        for start in range(0, len(raw), step):
            yield pybase64.b64encode(raw[start:start + step])
        yield b'"}'
    elif array.ndim == 0 or len(array) == 0:
        yield _json(arrays.encode(np.asarray(array)))
    else:
        step = _rows_per_piece(array)
        yield b"["
        for start in range(0, len(array), step):
            if start:
                yield b","
            yield _json(arrays.encode(np.asarray(array[start:start + step])))[1:-1]
        yield b"]"


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _holds_arrays(value: Any) -> bool:
    if isinstance(value, dict):
        return value.keys() in (REFERENCE_KEYS, INLINE_KEYS) or any(_holds_arrays(item) for item in value.values())
    return isinstance(value, list) and any(_holds_arrays(item) for item in value)


def _pieces(value: Any, folder: Path, as_base64: bool) -> Iterator[bytes]:
    if not _holds_arrays(value):
        # One call for a part without arrays (a layer's config, a fit's history): the same text as
        # key by key, made several times faster (a small CNN's answer took 3.5 ms, mostly here).
        yield _json(value)
    elif isinstance(value, dict):
        if value.keys() in (REFERENCE_KEYS, INLINE_KEYS):
            yield from _array_pieces(_load(folder, value), as_base64, value["dtype"])
            return
        yield b"{"
        for index, (key, item) in enumerate(value.items()):
            yield (b"," if index else b"") + _json(key) + b":"
            yield from _pieces(item, folder, as_base64)
        yield b"}"
    elif isinstance(value, list):
        yield b"["
        for index, item in enumerate(value):
            if index:
                yield b","
            yield from _pieces(item, folder, as_base64)
        yield b"]"


def result_json(result: dict, folder: Path, as_base64: bool) -> Iterator[bytes]:
    """The RUN RESULT's JSON in pieces of about `PIECE_BYTES`, arrays read from their files."""
    buffer, size = [], 0
    for piece in _pieces(result, folder, as_base64):
        buffer.append(piece)
        size += len(piece)
        if size >= PIECE_BYTES:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)
