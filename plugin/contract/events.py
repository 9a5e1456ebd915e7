"""The events of a run (CONTRACT §6), one typed protocol for every transport.

The same models travel from a run's step loop to its observer, between processes (a worker's
pipe, a distributed run's child, a cluster task) and out to SSE subscribers, where `type` is
the SSE `event:` name and the other fields are its `data:`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from nncards.contract.inspection import Inspection
from nncards.contract.run import RunStatus, StepKind


class EventType(StrEnum):
    STATUS = "status"
    STEP = "step"
    EPOCH = "epoch"
    DONE = "done"
    INSPECT = "inspect"


class StepState(StrEnum):
    STARTED = "started"
    FINISHED = "finished"


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    def data(self) -> dict[str, Any]:
        """The SSE `data:` of the event: every field but its type."""
        return self.model_dump(mode="json", exclude={"type"})


class StatusEvent(_Event):
    type: Literal[EventType.STATUS] = EventType.STATUS
    status: RunStatus


class StepEvent(_Event):
    type: Literal[EventType.STEP] = EventType.STEP
    index: int
    kind: StepKind
    state: StepState


class EpochEvent(_Event):
    type: Literal[EventType.EPOCH] = EventType.EPOCH
    step: int = Field(description="Index of the fit step in the run.")
    epoch: int = Field(description="The epoch just finished, from 1.")
    epochs: int
    metrics: dict[str, Any] = Field(description="Keras' logs at the epoch's end (non-finite numbers as strings).")


class DoneEvent(_Event):
    type: Literal[EventType.DONE] = EventType.DONE
    status: RunStatus


class InspectEvent(_Event):
    """A fit's inspection after an epoch (`inspect_every`)."""

    type: Literal[EventType.INSPECT] = EventType.INSPECT
    step: int = Field(description="Index of the fit step in the run.")
    inspection: Inspection


RunEvent = Annotated[Union[StatusEvent, StepEvent, EpochEvent, DoneEvent, InspectEvent], Field(discriminator="type")]

