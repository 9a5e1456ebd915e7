"""`POST /graphs/validate`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from nncards.graph import Graph
from nncards.server.errors import ERROR_RESPONSES
from nncards.server.models import ValidationResult
from nncards.server.validator import Validator


def validator(request: Request) -> Validator:
    return request.app.state.validator


GraphValidator = Annotated[Validator, Depends(validator)]

router = APIRouter(tags=["graphs"])


@router.post("/graphs/validate", response_model=ValidationResult, responses=ERROR_RESPONSES)
async def validate_graph(graph: Graph, checker: GraphValidator) -> dict:
    """Every problem of the graph in one pass, and the shapes that could be inferred.

    Any graph that fits the graph model gets 200; `valid` says whether it can be built.
    """
    return await checker.validate(graph)
