"""`POST /graphs/validate`."""

from __future__ import annotations

from fastapi import APIRouter

from nncards.contract.catalog import ValidationResult
from nncards.contract.graph import Graph
from nncards.server.dependencies import ValidationDep
from nncards.server.errors import ERROR_RESPONSES

router = APIRouter(tags=["graphs"])


# Unset fields left out: a problem's absent node, port or edge is not written as null, exactly
# as `nncards.validate` answers (CONTRACT §7).
@router.post("/graphs/validate", response_model=ValidationResult, response_model_exclude_unset=True,
             responses=ERROR_RESPONSES)
async def validate_graph(graph: Graph, validation: ValidationDep) -> ValidationResult:
    """Every problem of the graph in one pass, and the shapes that could be inferred.

    Any graph that fits the graph model gets 200; `valid` says whether it can be built.
    """
    return await validation.validate(graph)
