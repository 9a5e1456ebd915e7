"""The catalogue (CONTRACT §3: CARD, PORT, types) and the other answers of the REST API (§6)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nncards.contract.errors import Problem
from nncards.contract.run import RunStatus
from nncards.contract.types import TypeId


class PortInfo(BaseModel):
    id: str = Field(description="The Keras keyword name, snake_case.")
    text: str
    type: TypeId = Field(description="A type id of `GET /api/v1/types`.")
    help: str
    multiplicity: Literal["1", "n"]
    required: bool
    literal: bool = Field(description="The value can be typed in the node's params.")
    socket: bool = Field(description="The value can arrive over an edge.")
    default: Any = None


class CardInfo(BaseModel):
    id: str
    version: int
    title: str
    path: list[str]
    help: str
    keras: str | None
    inputs: list[PortInfo]
    outputs: list[PortInfo]
    params_schema: dict[str, Any] = Field(description="JSON Schema (draft 2020-12) of the literal inputs.")


class LoadError(BaseModel):
    pack: str
    message: str


class Catalogue(BaseModel):
    api_version: Literal["1"]
    cards: list[CardInfo]
    load_errors: list[LoadError]


class TypeInfo(BaseModel):
    id: TypeId
    help: str
    literal: bool
    socket: bool
    color: str = Field(description="CSS colour shared by the editor and the card images.")


class TypeList(BaseModel):
    types: list[TypeInfo]


class ValidationResult(BaseModel):
    valid: bool
    errors: list[Problem]
    shapes: dict[str, dict[str, list[Any]]] = Field(
        description="Inferred output shapes by node and port, batch dimension first (null when unknown).")

    def as_json(self) -> dict:
        """As served: a problem's absent node, port or edge is left out rather than null."""
        return {"valid": self.valid, "errors": [p.as_json() for p in self.errors], "shapes": self.shapes}


class RunCreated(BaseModel):
    run_id: str
    status: RunStatus


class RunSummary(BaseModel):
    run_id: str
    status: RunStatus
    created_at: str = Field(description="ISO 8601, UTC.")
    finished_at: str | None = Field(description="ISO 8601, UTC; null while the run is not finished.")


class RunPage(BaseModel):
    runs: list[RunSummary] = Field(description="Newest first.")
    total: int = Field(description="Runs in the store.")


class HealthStatus(StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"  # answered with 503: runs cannot make progress (see `problem`)


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: HealthStatus
    version: str
    queued: int = Field(0, description="Runs waiting for a worker.")
    running: int = Field(0, description="Runs executing now.")
    oldest_run_seconds: float | None = Field(None, description="Age of the oldest queued or running run; "
                                             "null when there is none.")
    problem: str | None = Field(None, description="Why runs cannot make progress; null when they can.")
