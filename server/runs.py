"""The run routes: create (optionally waiting), list, read, follow as server-sent events, cancel."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from nncards.contract import arrays
from nncards.execute.entry import count_array_elements
from nncards.contract.errors import ErrorEnvelope, NncardsError, Problem, summarize
from nncards.contract.run import Run, RunResult
from nncards.server.errors import ANY_ERROR, ERROR_RESPONSES, NOT_FOUND, as_json_responses
from nncards.server.graphs import GraphValidator
from nncards.contract.catalog import RunCreated, RunPage, RunSummary
from nncards.server.service import RunService


def run_service(request: Request) -> RunService:
    return request.app.state.runs


Runs = Annotated[RunService, Depends(run_service)]
ArrayFormat = Annotated[Literal["lists", "base64"], Query(
    alias="arrays",
    description="How arrays in the RUN RESULT are written: nested lists, or `{dtype, shape, base64}` blocks.")]
Wait = Annotated[str | None, Query(
    pattern=r"^(true|false|\d+(\.\d+)?)$",
    description="`true` (up to the server's cap, 60 s by default) or a number of seconds: hold the request "
    "until the run finishes and answer 200 with its RUN RESULT, or 202 when the time passes first.")]

SQLITE_MAX_INTEGER = 2**63 - 1  # a larger offset or event id would overflow the store's query

router = APIRouter(tags=["runs"])


def as_lists(value: Any) -> Any:
    """A stored RUN RESULT (arrays kept as base64 blocks) with every array as nested lists."""
    if isinstance(value, dict):
        if value.keys() == {"dtype", "shape", "base64"}:
            return arrays.encode(arrays.decode(value))
        return {key: as_lists(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_lists(item) for item in value]
    return value


def present(result: dict, array_format: str) -> dict:
    return result if array_format == "base64" else as_lists(result)


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


def _wait_seconds(wait: str | None, cap: float) -> float | None:
    if wait in (None, "false"):
        return None
    return cap if wait == "true" else min(float(wait), cap)


def _check_limits(run: Run, validation: dict, limit: int) -> None:
    elements = count_array_elements(run)
    if elements > limit:
        raise NncardsError("too_large", f"The request holds {elements} array elements, more than the limit "
                           f"of {limit}.", [Problem(code="too_large", message="too many array elements",
                                                    expected=f"at most {limit}", received=elements)])
    if not validation["valid"]:
        problems = [Problem(**error) for error in validation["errors"]]
        code = "too_large" if any(p.code == "too_large" for p in problems) else "graph_invalid"
        raise NncardsError(code, f"The graph is not valid: {summarize(problems)}", problems)


# OpenAPI links from a new run to what can be asked about it (clients and fuzzers follow them).
RUN_LINKS = {name: {"operationId": name, "parameters": {"run_id": "$response.body#/run_id"}}
             for name in ("get_run", "run_events", "cancel_run")}


@router.post(
    "/runs", status_code=201, response_model=RunCreated,
    responses={**ERROR_RESPONSES,
               201: {"links": RUN_LINKS},
               200: {"model": RunResult, "description": "With `wait`: the run finished in time.", "links": RUN_LINKS},
               202: {"model": RunCreated, "description": "With `wait`: the run is still going.", "links": RUN_LINKS}})
async def create_run(run: Run, runs: Runs, checker: GraphValidator, request: Request,
                     wait: Wait = None, array_format: ArrayFormat = "lists") -> JSONResponse:
    """Queue a run: the graph is validated first (422 `graph_invalid` when it cannot be built)."""
    settings = request.app.state.settings
    _check_limits(run, await checker.validate(run.graph), settings.max_array_elements)
    run_id = await runs.submit(run.model_dump(by_alias=True))
    seconds = _wait_seconds(wait, settings.max_wait_seconds)
    if seconds is not None:
        if await runs.wait(run_id, seconds):
            return JSONResponse(present(runs.result(run_id), array_format))
        return JSONResponse({"run_id": run_id, "status": runs.get(run_id).status}, status_code=202)
    return JSONResponse({"run_id": run_id, "status": "queued"}, status_code=201)


@router.get("/runs", response_model=RunPage)
async def list_runs(runs: Runs, limit: Annotated[int, Query(ge=1, le=1000)] = 20,
                    offset: Annotated[int, Query(ge=0, le=SQLITE_MAX_INTEGER)] = 0) -> RunPage:
    """The runs in the store, newest first."""
    rows, total = runs.store.page(limit, offset)
    return RunPage(runs=[RunSummary(run_id=r, status=s, created_at=_iso(c), finished_at=_iso(f))
                         for r, s, c, f in rows], total=total)


@router.get("/runs/{run_id}", response_model=RunResult, responses=NOT_FOUND)
async def get_run(run_id: str, runs: Runs, array_format: ArrayFormat = "lists") -> JSONResponse:
    """The RUN RESULT; while the run is queued or running, its status alone."""
    return JSONResponse(present(runs.result(run_id), array_format))


@router.delete("/runs/{run_id}", response_model=RunResult, responses={
    **NOT_FOUND, 409: {"model": ErrorEnvelope, "description": "`run_finished`: the run had already finished."}})
async def cancel_run(run_id: str, runs: Runs, array_format: ArrayFormat = "lists") -> JSONResponse:
    """Cancel a queued run at once, a running one at its next batch."""
    return JSONResponse(present(await runs.cancel(run_id), array_format))


async def existing_run(run_id: str, runs: Runs) -> str:
    runs.get(run_id)
    return run_id


@router.get("/runs/{run_id}/events", response_class=EventSourceResponse,
            responses={**as_json_responses({**NOT_FOUND, 422: ERROR_RESPONSES[422], **ANY_ERROR}),
                       200: {"description": "Events `status`, `step`, `epoch` and `done`; ids "
                             "increase from 1; the stream ends after `done`."}})
async def run_events(run_id: Annotated[str, Depends(existing_run)], runs: Runs,
                     last_event_id: Annotated[int, Header(ge=0, le=SQLITE_MAX_INTEGER)] = 0):
    """Every event of the run so far, then the live ones; `Last-Event-ID` resumes after that id."""
    async for event in runs.events(run_id, last_event_id):
        yield ServerSentEvent(event=event.event, id=str(event.id), data=event.data)
