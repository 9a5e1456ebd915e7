"""The run routes: create (optionally waiting), list, read, follow as server-sent events, cancel.

A run request may carry tens of MiB of numbers. Its body is parsed with its arrays straight into
NumPy (`FastJsonRoute`, `nncards.contract.run_json`: simdjson, never a Python float per number),
then the arrays are set aside as files by the run service (services/request_arrays.py). A body
that opens with its graph has the graph validated and its model built ahead as soon as it has
arrived, while the rest is parsed (`EarlyBuild`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import Annotated, Any, Literal

from pydantic import ValidationError

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.routing import APIRoute
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from nncards.card import ModelRole
from nncards.contract.catalog import RunCreated, RunPage, ValidationResult
from nncards.contract.graph import Graph
from nncards.contract.errors import ErrorCode, ErrorEnvelope, NncardsError, Problem, summarize
from nncards.contract import run_json
from nncards.contract.run import Run, RunResult, RunStatus, StepKind
from nncards.execute.entry import count_array_elements, decode_arrays
from nncards.registry import registry
from nncards.server.dependencies import InterchangeDep, RunServiceDep, SettingsDep, ValidationDep
from nncards.server.middleware import RECEIVED_BODY, ReceivedBody, off_the_loop_when_large
from nncards.server.services.request_arrays import float32_inputs
from nncards.server.services.runs import RunService
from nncards.server.services.validation import ValidationService
from nncards.server.errors import ANY_ERROR, ERROR_RESPONSES, NOT_FOUND, as_json_responses
from nncards.server.services.results import result_json
from nncards.server.services.store import RunRow
from nncards.server.settings import Settings

ArrayFormat = Annotated[Literal["lists", "base64"], Query(
    alias="arrays",
    description="How arrays in the RUN RESULT are written: nested lists, or `{dtype, shape, base64}` blocks.")]
Wait = Annotated[str | None, Query(
    pattern=r"^(true|false|\d+(\.\d+)?)$",
    description="`true` (up to the server's cap, 60 s by default) or a number of seconds: hold the request "
    "until the run finishes and answer 200 with its RUN RESULT, or 202 when the time passes first.")]

SQLITE_MAX_INTEGER = 2**63 - 1  # a larger offset or event id would overflow the store's query


class FastJsonRequest(Request):
    """The body as the BodyLimit middleware read it (with its skeleton), not read and copied again."""

    async def body(self) -> bytes:
        received: ReceivedBody | None = self.scope.get(RECEIVED_BODY)
        return received.body if received is not None else await super().body()

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            received: ReceivedBody | None = self.scope.get(RECEIVED_BODY)
            structure, quotes = (received.structure, received.quotes) if received is not None else (None, None)
            self._json = await off_the_loop_when_large(len(body), run_json.parse, body, structure, quotes,
                                                       float32_inputs)
        return self._json


class FastJsonRoute(APIRoute):
    """A route whose JSON body is a RUN's, its arrays parsed into NumPy (FastAPI's documented way: a
    custom Request)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(FastJsonRequest(request.scope, request.receive))

        return handle


router = APIRouter(tags=["runs"], route_class=FastJsonRoute)


def result_response(row: RunRow, array_format: str, status: int = 200) -> StreamingResponse:
    """The RUN RESULT, written piece by piece with its arrays read from their files: exactly the
    JSON of the `RunResult` model, never held whole in the server."""
    return StreamingResponse(result_json(row.result, row.folder, array_format == "base64"), status_code=status,
                             media_type="application/json")


def _wait_seconds(wait: str | None, cap: float) -> float | None:
    if wait in (None, "false"):
        return None
    return cap if wait == "true" else min(float(wait), cap)


def _too_large(message: str, elements: int, limit: int) -> NncardsError:
    return NncardsError(ErrorCode.TOO_LARGE, f"{message}: {elements}, more than the limit of {limit}.",
                        [Problem(code=ErrorCode.TOO_LARGE, message=message, expected=f"at most {limit}",
                                 received=elements)])


def _samples(value) -> int:
    return len(value) if isinstance(value, list) else (value.shape[0] if value.shape else 1)


def result_elements(run: Run, shapes: dict[str, dict[str, list]]) -> int:
    """Array elements the outputs of the run's call and predict steps will hold, from the inferred
    shapes (a dimension still unknown counts as 1: weights and such are checked on the result)."""
    outputs = {node.id for node in run.graph.nodes
               if (card := registry().get(node.card)) is not None and card.model_role is ModelRole.OUTPUT}
    per_sample = sum(math.prod(d or 1 for d in shapes.get(edge.source, {}).get(edge.source_port, [None])[1:])
                     for edge in run.graph.edges if edge.target in outputs)
    return sum(per_sample * max((_samples(v) for v in step.inputs.values()), default=1)
               for step in run.steps if step.kind in (StepKind.CALL, StepKind.PREDICT))


def _check_limits(run: Run, validation: ValidationResult, settings: Settings) -> None:
    elements = count_array_elements(run)
    if elements > settings.max_array_elements:
        raise _too_large("array elements in the request", elements, settings.max_array_elements)
    if not validation.valid:
        problems = validation.errors
        code = ErrorCode.TOO_LARGE if any(p.code == ErrorCode.TOO_LARGE for p in problems) else ErrorCode.GRAPH_INVALID
        raise NncardsError(code, f"The graph is not valid: {summarize(problems)}", problems)
    elements = result_elements(run, validation.shapes)
    if elements > settings.max_result_elements:
        raise _too_large("array elements the run's outputs would hold", elements, settings.max_result_elements)


def validated(graph: Graph, runs: RunService, validation: ValidationService) -> Awaitable[ValidationResult]:
    """A run's graph validated; while the validation workers are not running, the idle run worker
    that will take the run validates it."""
    return validation.validate(graph, elsewhere=runs.executor.validate)


# The members of a run request its model is built from; the arrays come in the others.
MODEL_MEMBERS = ("graph", "seed", "distribution")
ARRAY_MEMBERS = frozenset({"weights", "steps"})


class EarlyBuild:
    """A run request's `BodyWatcher`: once its body has arrived, a graph the body opens with is
    validated and, when valid (the graph's limits are part of its validation), the model is asked of
    the worker the run will go to, while the body is parsed and the request checked.

    Measured on the 2-core machine (benchmarks/runs.py's 32 MiB base64 CNN through a live server,
    warm): the run's model is ready 60-70 ms after the request's head instead of 66-77 ms when it
    is asked for once the request is checked (the medians of three interleaved pairs of 10 runs).
    Asked for as the body still arrived, it was ready no sooner: the build took the cores that the
    client and the server spend on the transfer (25 ms became 40-50). A wrong guess costs nothing
    but the worker's time: the run
    uses a model built ahead only if it was built from the run's graph and seed (workers.py's
    `BuiltAhead`), and asks for its own otherwise, as it does when the body opens another way."""

    _building: set[asyncio.Task] = set()  # held until done (the loop keeps only weak references)

    def __init__(self, runs: RunService, validation: ValidationService):
        self.runs, self.validation = runs, validation

    def arrived(self, body: bytearray) -> None:
        members = run_json.leading_members(body, ARRAY_MEMBERS)
        if "graph" not in members:
            return
        try:  # the seed, when it comes after the arrays, is guessed: the default
            run = Run.model_validate({key: members[key] for key in MODEL_MEMBERS if key in members})
        except ValidationError:
            return  # the request's answer will say why
        if run.distribution is not None:
            return
        known = self.validation.cached(run.graph)  # a graph seen before: asked for now, before the parse
        if known is None:
            task = asyncio.create_task(self._build(run), name="nncards-early-build")
            self._building.add(task)
            task.add_done_callback(self._building.discard)
        else:
            self._build_if_valid(run, known)

    async def _build(self, run: Run) -> None:
        try:
            validation = await validated(run.graph, self.runs, self.validation)
        except Exception:  # the request's own validation of the graph meets it too, and answers
            return
        self._build_if_valid(run, validation)

    def _build_if_valid(self, run: Run, validation: ValidationResult) -> None:
        if validation.valid:
            self.runs.executor.build_ahead(run)


UNAVAILABLE = {
    429: {"model": ErrorEnvelope, "description": "`queue_full`: the queue holds the most runs it may; "
          "`Retry-After` says when to try again."},
    503: {"model": ErrorEnvelope, "description": "`storage_failed`: the run database cannot be written now; "
          "`Retry-After` says when to try again."},
}

# OpenAPI links from a new run to what can be asked about it (clients and fuzzers follow them).
RUN_LINKS = {name: {"operationId": name, "parameters": {"run_id": "$response.body#/run_id"}}
             for name in ("get_run", "run_events", "cancel_run")}


@router.post(
    "/runs", status_code=201, response_model=RunCreated,
    responses={**ERROR_RESPONSES, **UNAVAILABLE,
               201: {"links": RUN_LINKS},
               200: {"model": RunResult, "description": "With `wait`: the run finished in time.", "links": RUN_LINKS},
               202: {"model": RunCreated, "description": "With `wait`: the run is still going.", "links": RUN_LINKS}})
async def create_run(run: Run, runs: RunServiceDep, validation: ValidationDep, settings: SettingsDep,
                     response: Response, wait: Wait = None, array_format: ArrayFormat = "lists") -> Any:
    """Queue a run: the graph is validated first (422 `graph_invalid` when it cannot be built)."""
    await asyncio.to_thread(decode_arrays, run)
    _check_limits(run, await validated(run.graph, runs, validation), settings)
    await runs.check(run)
    run_id = await runs.submit(run)
    seconds = _wait_seconds(wait, settings.max_wait_seconds)
    if seconds is None:
        return RunCreated(run_id=run_id, status=RunStatus.QUEUED)
    if await runs.wait(run_id, seconds):
        # The RUN RESULT, documented as the 200 answer: not the 201 answer's model.
        return result_response(await runs.result(run_id), array_format)
    response.status_code = 202
    return RunCreated(run_id=run_id, status=(await runs.get(run_id)).status)


@router.get("/runs", response_model=RunPage)
async def list_runs(runs: RunServiceDep, limit: Annotated[int, Query(ge=1, le=1000)] = 20,
                    offset: Annotated[int, Query(ge=0, le=SQLITE_MAX_INTEGER)] = 0) -> RunPage:
    """The runs in the store, newest first."""
    return await runs.page(limit, offset)


@router.get("/runs/{run_id}", response_model=RunResult, responses=NOT_FOUND)
async def get_run(run_id: str, runs: RunServiceDep, array_format: ArrayFormat = "lists") -> StreamingResponse:
    """The RUN RESULT; while the run is queued or running, its status alone."""
    return result_response(await runs.result(run_id), array_format)


@router.delete("/runs/{run_id}", response_model=RunResult, responses={
    **NOT_FOUND, 503: UNAVAILABLE[503],
    204: {"description": "The run had finished: it is removed, with its arrays and events."},
    409: {"model": ErrorEnvelope, "description": "`run_finished`: the run finished while it was being cancelled."}})
async def cancel_run(run_id: str, runs: RunServiceDep, array_format: ArrayFormat = "lists") -> Response:
    """Cancel a queued run at once, a running one at its next batch (200, its RUN RESULT); remove a
    finished one (204)."""
    cancelled = await runs.delete(run_id)
    return Response(status_code=204) if cancelled is None else result_response(cancelled, array_format)


async def existing_run(run_id: str, runs: RunServiceDep) -> str:
    await runs.get(run_id)
    return run_id


@router.get("/runs/{run_id}/events", response_class=EventSourceResponse,
            responses={**as_json_responses({**NOT_FOUND, 422: ERROR_RESPONSES[422], **ANY_ERROR}),
                       200: {"description": "Events `status`, `step`, `epoch` and `done`; ids "
                             "increase from 1; the stream ends after `done`."}})
async def run_events(run_id: Annotated[str, Depends(existing_run)], runs: RunServiceDep,
                     last_event_id: Annotated[int, Header(ge=0, le=SQLITE_MAX_INTEGER)] = 0):
    """Every event of the run so far, then the live ones; `Last-Event-ID` resumes after that id."""
    async for event in runs.events(run_id, last_event_id):
        yield ServerSentEvent(event=event.event, id=str(event.id), data=event.data)


@router.get("/runs/{run_id}/model.keras", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
          "description": "The trained model as a `.keras` file that plain Keras loads."},
    **NOT_FOUND, 409: {"model": ErrorEnvelope, "description": "`run_not_finished`: the run has not finished."}})
async def download_model(run_id: str, runs: RunServiceDep, interchange: InterchangeDep) -> Response:
    """The model of a finished run, with the weights its layers ended with, as a `.keras` file."""
    data = await interchange.keras_file(*await runs.trained(run_id))
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{run_id}.keras"'})
