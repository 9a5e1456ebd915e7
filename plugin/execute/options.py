"""What a run is given besides its request: limits, an observer, its id, the array encoding."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from nncards.contract.events import RunEvent
from nncards.contract.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from nncards.build.model import BuiltModel

DATA_DIR_VARIABLE = "NNCARDS_DATA_DIR"


class Observer(Protocol):
    """Who watches a run: receives its events, and may ask it to stop."""

    def emit(self, event: RunEvent) -> None: ...
    def cancelled(self) -> bool: ...


class SilentObserver:
    def emit(self, event: RunEvent) -> None:
        pass

    def cancelled(self) -> bool:
        return False


class Cancelled(Exception):
    """The observer asked the run to stop."""


def default_data_dir() -> Path:
    """Where runs keep their files: `NNCARDS_DATA_DIR`, else the user's XDG data folder."""
    if os.environ.get(DATA_DIR_VARIABLE):
        return Path(os.environ[DATA_DIR_VARIABLE])
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "nncards"


def run_folder(data_dir: Path, run_id: str) -> Path:
    """A run's own folder in a data directory (TensorBoard logs and other files of the run)."""
    return data_dir / "runs" / run_id


@dataclass(frozen=True)
class RunOptions:
    limits: Limits = DEFAULT_LIMITS
    observer: Observer = field(default_factory=SilentObserver)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    as_base64: bool = False  # arrays of the result as base64 objects rather than nested lists
    data_dir: Path | None = None  # default: `default_data_dir()`, looked up when a run writes a file
    # The model of the request's graph and seed, built ahead of the run (a server's worker builds it
    # while the request is checked and stored); None: the run builds it.
    built: BuiltModel | None = None
    # The (optimizer, loss, metrics) that model was compiled with ahead, its optimizer's variables
    # made (`runner.compile_ahead`, for a run whose first step is a fit); None: not compiled.
    compiled: tuple | None = None

    def run_folder(self) -> Path:
        return run_folder(self.data_dir or default_data_dir(), self.run_id)
