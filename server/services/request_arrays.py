"""A run request's arrays: decoded once as the request arrives, then kept as `.npy` files in the run's folder.

The body is parsed with its arrays straight into NumPy (routers/runs.py, `nncards.contract.run_json`);
an array that came otherwise (a base64 block, a list only the old way reads) is decoded once
(`nncards.execute.entry.decode_arrays`), so that nothing walks the lists again. `set_aside`
writes each array as `<n>.npy` into the run's folder of the data directory and leaves an empty
list in its place: the run record in SQLite is written without the arrays, and a local worker
is handed the request with the files' paths, not the arrays' bytes through its pipe; it maps
the files (`StoredRequest.loaded`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nncards.contract.run import Run


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
        files = []
        for number, (group, key) in enumerate(_slots(run)):
            if isinstance(group[key], np.ndarray):
                path = folder / f"{number}.npy"
                np.save(path, group[key], allow_pickle=False)
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
