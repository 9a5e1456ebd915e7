"""Problems and the error envelope of CONTRACT §5.

A `Problem` is one thing wrong with a graph or a request; an envelope gathers them under a
top-level code. Every error answer nncards gives, from validation to a failed run, is built here.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorCode(StrEnum):
    """Every code an error or a problem may carry (CONTRACT §5 and §10)."""

    # single problems, inside `errors`
    UNKNOWN_CARD = "unknown_card"
    INVALID_NODE_ID = "invalid_node_id"
    DUPLICATE_NODE_ID = "duplicate_node_id"
    DUPLICATE_LAYER_NAME = "duplicate_layer_name"
    UNKNOWN_PARAM = "unknown_param"
    PARAM_INVALID = "param_invalid"
    PARAM_OUT_OF_RANGE = "param_out_of_range"
    PARAM_AND_EDGE = "param_and_edge"
    UNKNOWN_PORT = "unknown_port"
    DANGLING_EDGE = "dangling_edge"
    TYPE_MISMATCH = "type_mismatch"
    MULTIPLE_EDGES_TO_PORT = "multiple_edges_to_port"
    MISSING_REQUIRED_INPUT = "missing_required_input"
    CYCLE = "cycle"
    SHAPE_MISMATCH = "shape_mismatch"
    NO_INPUTS = "no_inputs"
    NO_OUTPUTS = "no_outputs"
    TOO_LARGE = "too_large"
    ARRAY_INVALID = "array_invalid"
    UNSUPPORTED_LAYER = "unsupported_layer"
    # top level
    BAD_REQUEST = "bad_request"
    REQUEST_INVALID = "request_invalid"
    GRAPH_INVALID = "graph_invalid"
    IMPORT_UNSUPPORTED = "import_unsupported"
    EXPORT_UNSUPPORTED = "export_unsupported"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    RUN_FINISHED = "run_finished"
    RUN_NOT_FINISHED = "run_not_finished"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    QUEUE_FULL = "queue_full"
    INTERNAL_ERROR = "internal_error"
    # in a RUN RESULT's `error`
    RUN_FAILED = "run_failed"
    RUN_TIMEOUT = "run_timeout"
    RUN_CANCELLED = "run_cancelled"
    RUN_INTERRUPTED = "run_interrupted"
    RUN_NODE_LOST = "run_node_lost"  # the cluster process or node executing the run went away
    RESULT_TOO_LARGE = "result_too_large"
    STORAGE_FAILED = "storage_failed"


# The HTTP status each top-level code is answered with (CONTRACT §5 and §10).
STATUS_OF_CODE: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.RUN_FINISHED: 409,
    ErrorCode.RUN_NOT_FINISHED: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.REQUEST_INVALID: 422,
    ErrorCode.GRAPH_INVALID: 422,
    ErrorCode.IMPORT_UNSUPPORTED: 422,
    ErrorCode.EXPORT_UNSUPPORTED: 422,
    ErrorCode.QUEUE_FULL: 429,
    ErrorCode.INTERNAL_ERROR: 500,
}


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

    code: ErrorCode = Field(description="Machine-readable code, e.g. `param_out_of_range`.")
    message: str = Field(description="One readable sentence.")
    node: str | None = Field(None, description="Id of the node at fault.")
    port: str | None = Field(None, description="Port (or JSON path, for request errors) at fault.")
    edge: int | None = Field(None, description="Index of the edge at fault in `edges`.")
    expected: Any = Field(None, description="What would have been accepted.")
    received: Any = Field(None, description="The value received (non-finite numbers as strings).")

    def as_json(self) -> dict:
        data = self.model_dump(exclude_unset=True)
        data["code"] = str(self.code)
        if "received" in data:
            data["received"] = json_safe(data["received"])
        if "expected" in data:
            data["expected"] = json_safe(data["expected"])
        return data


class ErrorBody(BaseModel):
    """The inner object of the error envelope; also a RUN RESULT's `error`."""

    code: ErrorCode = Field(description="Top-level code, e.g. `graph_invalid` or `run_timeout`.")
    message: str = Field(description="One readable sentence.")
    errors: list[Problem] | None = Field(None, description="The single problems, where there are several.")


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def error_body(code: ErrorCode | str, message: str, problems: list[Problem] | None = None) -> dict:
    body: dict[str, Any] = {"code": str(ErrorCode(code)), "message": message}
    if problems is not None:
        body["errors"] = [p.as_json() for p in problems]
    return body


class NncardsError(Exception):
    """An error that carries its envelope: raised inside nncards, answered as JSON outside."""

    def __init__(self, code: ErrorCode | str, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.problems = problems

    def body(self) -> dict:
        return error_body(self.code, self.message, self.problems)


def summarize(problems: list[Problem]) -> str:
    first = problems[0]
    where = f" (node {first.node!r}" + (f", port {first.port!r})" if first.port else ")") if first.node else ""
    more = f"; {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
    return f"{first.message}{where}{more}."
