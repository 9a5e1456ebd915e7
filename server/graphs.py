"""`POST /graphs/validate`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from nncards.contract.graph import Graph
from nncards.server.errors import ERROR_RESPONSES
from nncards.contract.catalog import ValidationResult
from nncards.server.validator import ValidationService


def validator(request: Request) -> ValidationService:
    return request.app.state.validator


GraphValidator = Annotated[ValidationService, Depends(validator)]

router = APIRouter(tags=["graphs"])


@router.post("/graphs/validate", response_model=ValidationResult, responses=ERROR_RESPONSES)
async def validate_graph(graph: Graph, checker: GraphValidator) -> JSONResponse:
    """Every problem of the graph in one pass, and the shapes that could be inferred.

    Any graph that fits the graph model gets 200; `valid` says whether it can be built.
    """
    # Answered as validated, not re-serialized through the response model: that would add a
    # `null` for every field a problem leaves out, unlike `nncards.validate` (CONTRACT §7).
    return JSONResponse(await checker.validate(graph))
