"""What a run is given besides its request: limits, an observer, its id, the array encoding."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol

from nncards.contract.events import RunEvent
from nncards.contract.limits import DEFAULT_LIMITS, Limits


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


@dataclass(frozen=True)
class RunOptions:
    limits: Limits = DEFAULT_LIMITS
    observer: Observer = field(default_factory=SilentObserver)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    as_base64: bool = False  # arrays of the result as base64 objects rather than nested lists
