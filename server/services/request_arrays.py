"""A run request's arrays: decoded once as the request arrives, then kept as `.npy` files in the run's folder.

The body is parsed with its arrays straight into NumPy (routers/runs.py, `nncards.contract.run_json`);
an array that came otherwise (a base64 block, a list only the old way reads) is decoded once
(`nncards.execute.entry.decode_arrays`), so that nothing walks the lists again. `set_aside`
writes each array as `<n>.npy` into the run's folder of the data directory and leaves an empty
list in its place, a step's inputs first cast to their Input's dtype as the run would cast them
(nested lists are read as float64: a float32 Input's lists are kept, and mapped by the worker, at
half their bytes; its long float lists come as float32 from the parse already, `float32_inputs`):
the run record in SQLite is written without the arrays, and a local worker is handed the request
with the files' paths, not the arrays' bytes through its pipe; it maps the files
(`StoredRequest.loaded`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from nncards.card.base import ModelRole
from nncards.contract import arrays
from nncards.contract.graph import Graph
from nncards.contract.run import Run
from nncards.registry import registry


def write_npy(path: Path, array: np.ndarray) -> None:
    """`np.save(path, array)`, its data copied into the file through a shared mapping.

    On this machine's ext4 disk, write() put a run's 24 MiB into the page cache in ~5 ms or in
    40-55 ms (when the kernel must find new pages; 48 MiB: 40-115 ms), the mapping in a steady
    ~19 ms (48 MiB: ~50 ms), which the worker's build of the model ahead (~40 ms) then hides. The
    file's blocks are reserved first: a full disk raises OSError here, not SIGBUS at a page fault.
    The bytes are copied by NumPy, which lets go of the GIL while it copies: a slice assignment to
    the mapping held it the whole copy (19-55 ms), and with it the event loop and the thread that
    hands the worker the model to build ahead, which then began that much later."""
    array = array if array.flags.c_contiguous else array.copy(order="C")
    with open(path, "w+b") as file:
        np.lib.format.write_array_header_1_0(file, np.lib.format.header_data_from_array_1_0(array))
        start, size = file.tell(), file.tell() + array.nbytes
        if not array.nbytes:
            return
        os.posix_fallocate(file.fileno(), 0, size)
        with mmap.mmap(file.fileno(), size) as mapped:
            target = np.frombuffer(mapped, np.uint8, array.nbytes, start)
            try:
                np.copyto(target, array.reshape(-1).view(np.uint8))  # as bytes: any dtype, bfloat16 too
            finally:
                del target  # the mapping closes only once no array views it


def input_dtypes(graph: Graph) -> dict[str, str]:
    """The dtype of each Input node of the graph whose parameters are valid: their cards and params
    only, not the whole graph's analysis (44 ms of a 2,000-node chain's, twice per request)."""
    dtypes = {}
    for node in graph.nodes:
        card = registry().get(node.card)
        if card is not None and card.model_role is ModelRole.INPUT:
            params, _ = card.validate_params(node.id, node.params)
            if params is not None:
                dtypes.setdefault(node.id, params.dtype)  # a duplicate id: the graph is refused anyway
    return dtypes


def float32_inputs(graph: Any) -> set[str]:
    """The Input nodes whose arrays `_cast_inputs` casts to float32, of a request's `graph` member
    as parsed (none when it is not a GRAPH): `run_json.parse` reads their long float arrays as
    float32 at once, so that the 50 MB float64 array of benchmarks/runs.py's lists is neither
    written nor cast (5 ms) here."""
    try:
        return {node for node, dtype in input_dtypes(Graph.model_validate(graph)).items() if dtype == "float32"}
    except ValidationError:
        return set()


def _cast_inputs(run: Run) -> None:
    """Each step's input arrays cast to their Input node's dtype with `arrays.cast`, as the run
    casts them (`runner.RunModel._inputs`, which then has nothing left to cast): the same values,
    stored once at the size the run uses. An array the cast refuses, or of a node that is not an
    Input, stays as it came, for the run to refuse with its own error."""
    dtypes = input_dtypes(run.graph)
    for step in run.steps:
        for node, value in (getattr(step, "inputs", None) or {}).items():
            if isinstance(value, np.ndarray) and node in dtypes:
                with contextlib.suppress(arrays.ArrayError):
                    step.inputs[node] = arrays.cast(value, dtypes[node])


def _slots(run: Run) -> list[tuple[dict, str]]:
    """(dict, key) of every array of the request, in a fixed order."""
    return [(group, key) for group in run.array_groups() for key in list(group)]


@dataclass(frozen=True)
class StoredRequest:
    """A run request whose arrays wait in files: the request with empty lists in their places, and
    the path of each array's file in the order of its slots (None: the array stayed in the request)."""

    run: Run
    files: list[str | None]

    @classmethod
    def set_aside(cls, run: Run, folder: Path) -> StoredRequest:
        """Write each NumPy array of `run` to `folder` as `<n>.npy`, leaving an empty list in its place."""
        folder.mkdir(parents=True, exist_ok=True)
        _cast_inputs(run)
        files = []
        for number, (group, key) in enumerate(_slots(run)):
            if isinstance(group[key], np.ndarray):
                path = folder / f"{number}.npy"
                write_npy(path, group[key])
                group[key] = []
                files.append(str(path))
            else:
                files.append(None)
        return cls(run, files)

    def loaded(self) -> Run:
        """The whole request, each array set aside mapped read-only from its file."""
        run = self.run.model_copy(deep=True)
        for (group, key), path in zip(_slots(run), self.files):
            if path is not None:
                group[key] = np.load(path, mmap_mode="r", allow_pickle=False)
        return run
