"""Problems and the error envelope of CONTRACT §5.

A `Problem` is one thing wrong with a graph or a request; an envelope gathers them under a
top-level code. Every error answer nncards gives, from validation to a failed run, is built here.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def json_safe(value: Any) -> Any:
    """The value with non-finite floats spelled as the strings of CONTRACT §5."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


class Problem(BaseModel):
    """One problem, naming where it is: a node, a port of it, or an edge by index."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Machine-readable code, e.g. `param_out_of_range`.")
    message: str = Field(description="One readable sentence.")
    node: str | None = Field(None, description="Id of the node at fault.")
    port: str | None = Field(None, description="Port (or JSON path, for request errors) at fault.")
    edge: int | None = Field(None, description="Index of the edge at fault in `edges`.")
    expected: Any = Field(None, description="What would have been accepted.")
    received: Any = Field(None, description="The value received (non-finite numbers as strings).")

    def as_json(self) -> dict:
        data = self.model_dump(exclude_unset=True)
        if "received" in data:
            data["received"] = json_safe(data["received"])
        if "expected" in data:
            data["expected"] = json_safe(data["expected"])
        return data


class ErrorBody(BaseModel):
    """The inner object of the error envelope; also a RUN RESULT's `error`."""

    code: str = Field(description="Top-level code, e.g. `graph_invalid` or `run_timeout`.")
    message: str = Field(description="One readable sentence.")
    errors: list[Problem] | None = Field(None, description="The single problems, where there are several.")


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def error_body(code: str, message: str, problems: list[Problem] | None = None) -> dict:
    body: dict[str, Any] = {"code": code, "message": message}
    if problems is not None:
        body["errors"] = [p.as_json() for p in problems]
    return body


class NncardsError(Exception):
    """An error that carries its envelope: raised inside nncards, answered as JSON outside."""

    def __init__(self, code: str, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.problems = problems

    def body(self) -> dict:
        return error_body(self.code, self.message, self.problems)


def summarize(problems: list[Problem]) -> str:
    first = problems[0]
    where = f" (node {first.node!r}" + (f", port {first.port!r})" if first.port else ")") if first.node else ""
    more = f"; {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
    return f"{first.message}{where}{more}."
