"""The run routes: create (optionally waiting), list, read, follow as server-sent events, cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from nncards.contract import arrays
from nncards.contract.catalog import RunCreated, RunPage, ValidationResult
from nncards.contract.errors import ErrorCode, ErrorEnvelope, NncardsError, Problem, summarize
from nncards.contract.run import Run, RunResult, RunStatus
from nncards.execute.entry import count_array_elements
from nncards.server.dependencies import RunServiceDep, SettingsDep, ValidationDep
from nncards.server.errors import ANY_ERROR, ERROR_RESPONSES, NOT_FOUND, as_json_responses

ArrayFormat = Annotated[Literal["lists", "base64"], Query(
    alias="arrays",
    description="How arrays in the RUN RESULT are written: nested lists, or `{dtype, shape, base64}` blocks.")]
Wait = Annotated[str | None, Query(
    pattern=r"^(true|false|\d+(\.\d+)?)$",
    description="`true` (up to the server's cap, 60 s by default) or a number of seconds: hold the request "
    "until the run finishes and answer 200 with its RUN RESULT, or 202 when the time passes first.")]

SQLITE_MAX_INTEGER = 2**63 - 1  # a larger offset or event id would overflow the store's query

router = APIRouter(tags=["runs"])


def _as_lists(value: Any) -> Any:
    """A stored RUN RESULT (arrays kept as base64 blocks) with every array as nested lists."""
    if isinstance(value, dict):
        if value.keys() == {"dtype", "shape", "base64"}:
            return arrays.encode(arrays.decode(value))
        return {key: _as_lists(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_lists(item) for item in value]
    return value


def present(result: RunResult, array_format: str) -> RunResult:
    return result if array_format == "base64" else RunResult.model_validate(_as_lists(result.as_json()))


def _wait_seconds(wait: str | None, cap: float) -> float | None:
    if wait in (None, "false"):
        return None
    return cap if wait == "true" else min(float(wait), cap)


def _check_limits(run: Run, validation: ValidationResult, limit: int) -> None:
    elements = count_array_elements(run)
    if elements > limit:
        raise NncardsError(ErrorCode.TOO_LARGE, f"The request holds {elements} array elements, more than the "
                           f"limit of {limit}.", [Problem(code=ErrorCode.TOO_LARGE, message="too many array elements",
                                                          expected=f"at most {limit}", received=elements)])
    if not validation.valid:
        problems = validation.errors
        code = ErrorCode.TOO_LARGE if any(p.code == ErrorCode.TOO_LARGE for p in problems) else ErrorCode.GRAPH_INVALID
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
async def create_run(run: Run, runs: RunServiceDep, validation: ValidationDep, settings: SettingsDep,
                     response: Response, wait: Wait = None, array_format: ArrayFormat = "lists") -> Any:
    """Queue a run: the graph is validated first (422 `graph_invalid` when it cannot be built)."""
    _check_limits(run, await validation.validate(run.graph), settings.max_array_elements)
    await runs.check(run)
    run_id = await runs.submit(run.model_dump(by_alias=True))
    seconds = _wait_seconds(wait, settings.max_wait_seconds)
    if seconds is None:
        return RunCreated(run_id=run_id, status=RunStatus.QUEUED)
    if await runs.wait(run_id, seconds):
        # The RUN RESULT, documented as the 200 answer: not the 201 answer's model.
        result = present(runs.result(run_id), array_format)
        return Response(result.model_dump_json(by_alias=True), media_type="application/json")
    response.status_code = 202
    return RunCreated(run_id=run_id, status=runs.get(run_id).status)


@router.get("/runs", response_model=RunPage)
async def list_runs(runs: RunServiceDep, limit: Annotated[int, Query(ge=1, le=1000)] = 20,
                    offset: Annotated[int, Query(ge=0, le=SQLITE_MAX_INTEGER)] = 0) -> RunPage:
    """The runs in the store, newest first."""
    return runs.page(limit, offset)


@router.get("/runs/{run_id}", response_model=RunResult, responses=NOT_FOUND)
async def get_run(run_id: str, runs: RunServiceDep, array_format: ArrayFormat = "lists") -> RunResult:
    """The RUN RESULT; while the run is queued or running, its status alone."""
    return present(runs.result(run_id), array_format)


@router.delete("/runs/{run_id}", response_model=RunResult, responses={
    **NOT_FOUND, 409: {"model": ErrorEnvelope, "description": "`run_finished`: the run had already finished."}})
async def cancel_run(run_id: str, runs: RunServiceDep, array_format: ArrayFormat = "lists") -> RunResult:
    """Cancel a queued run at once, a running one at its next batch."""
    return present(await runs.cancel(run_id), array_format)


async def existing_run(run_id: str, runs: RunServiceDep) -> str:
    runs.get(run_id)
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
