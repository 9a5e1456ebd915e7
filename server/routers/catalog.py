"""The card catalogue and the type list: pre-serialized, answered with an ETag, never loading TensorFlow.

These are the hottest routes. They answer the bytes of `Catalogue`, `CardInfo` and `TypeList`
serialized once at start-up (their `response_model`, which the OpenAPI document describes),
rather than a model FastAPI would validate and serialize again on every request; and they read
If-None-Match from the request themselves, because FastAPI's parameter solving costs more than
the rest of the request. The header is still described in the OpenAPI document.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from nncards.contract.catalog import CardInfo, Catalogue, TypeList
from nncards.server.dependencies import CatalogueDep
from nncards.server.errors import NOT_FOUND, not_found
from nncards.server.services.catalogue import Document

IF_NONE_MATCH = {"parameters": [{
    "name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
    "description": "An ETag from an earlier answer: 304 when the document is unchanged."}]}
NOT_MODIFIED = {304: {"description": "Unchanged since the ETag given in If-None-Match."}}

router = APIRouter(tags=["catalogue"])


def answer(document: Document, request: Request) -> Response:
    """The document, or 304 when the request's If-None-Match names its ETag."""
    headers = {"ETag": document.etag, "Cache-Control": "no-cache"}
    if document.matches(request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    return Response(document.body, media_type="application/json", headers=headers)


@router.get("/cards", response_model=Catalogue, responses=NOT_MODIFIED, openapi_extra=IF_NONE_MATCH)
async def list_cards(request: Request, documents: CatalogueDep) -> Response:
    """Every card with its ports and parameter schema, and the packs that failed to load."""
    return answer(documents.catalogue, request)


@router.get("/cards/{card_id}", response_model=CardInfo, responses={**NOT_MODIFIED, **NOT_FOUND},
            openapi_extra=IF_NONE_MATCH)
async def get_card(card_id: str, request: Request, documents: CatalogueDep) -> Response:
    """One card of the catalogue."""
    document = documents.cards.get(card_id)
    if document is None:
        raise not_found(f"card {card_id!r}")
    return answer(document, request)


@router.get("/types", response_model=TypeList, responses=NOT_MODIFIED, openapi_extra=IF_NONE_MATCH)
async def list_types(request: Request, documents: CatalogueDep) -> Response:
    """The data types ports carry, with their colours."""
    return answer(documents.types, request)
