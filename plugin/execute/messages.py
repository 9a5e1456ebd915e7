"""The messages a process running runs sends to the process that asked for them.

One protocol for every transport: a server's worker pipe carries these models as they are, a
distributed run's child writes them as JSON lines. Readers dispatch on the model type.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter

from nncards.contract.events import RunEvent
from nncards.contract.run import RunResult


class RunStarted(BaseModel):
    """The run left the queue: its worker is ready and starts it now."""

    type: Literal["started"] = "started"
    run_id: str


class RunProgress(BaseModel):
    type: Literal["event"] = "event"
    run_id: str
    event: RunEvent


class RunFinished(BaseModel):
    type: Literal["finished"] = "finished"
    run_id: str
    result: RunResult


WorkerMessage = Annotated[Union[RunStarted, RunProgress, RunFinished], Field(discriminator="type")]
WORKER_MESSAGE = TypeAdapter(WorkerMessage)
