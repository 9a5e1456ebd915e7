"""`GET /health`."""

from __future__ import annotations

from fastapi import APIRouter, Response

from nncards.contract.catalog import Health, HealthStatus
from nncards.server.dependencies import RunServiceDep

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health, responses={
    503: {"model": Health, "description": "Runs cannot make progress (`status` `unavailable`, `problem` says why)."}})
async def health(runs: RunServiceDep, response: Response) -> Health:
    """The server is up: its queue depth, the runs in progress and the age of the oldest."""
    answer = runs.health()
    if answer.status == HealthStatus.UNAVAILABLE:
        response.status_code = 503
    return answer
