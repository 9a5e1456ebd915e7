"""The card catalogue and the type list: serialized once, answered with an ETag, never loading TensorFlow."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response

from nncards.registry import registry
from nncards.server.errors import NOT_FOUND, not_found
from nncards.contract.catalog import CardInfo, Catalogue, TypeInfo, TypeList
from nncards.contract.types import TYPES


@dataclass(frozen=True)
class Document:
    """A JSON answer serialized once, with the strong ETag of its bytes."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, content) -> Document:
        body = json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    def answer(self, request: Request) -> Response:
        """The document, or 304 when the request's If-None-Match names its ETag."""
        headers = {"ETag": self.etag, "Cache-Control": "no-cache"}
        if_none_match = request.headers.get("if-none-match")
        if if_none_match and _matches(if_none_match, self.etag):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type="application/json", headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


class CatalogueDocuments:
    def __init__(self):
        catalogue = registry().catalogue().model_dump(mode="json")
        self.catalogue = Document.of(catalogue)
        self.cards = {card["id"]: Document.of(card) for card in catalogue["cards"]}
        types = TypeList(types=[TypeInfo(**vars(t)) for t in TYPES.values()])
        self.types = Document.of(types.model_dump(mode="json"))


def documents(request: Request) -> CatalogueDocuments:
    return request.app.state.catalogue


# These are the hottest routes: they read the app state and the header themselves, because
# FastAPI's parameter solving costs more than the rest of the request. The header is still
# described in the OpenAPI document.
IF_NONE_MATCH = {"parameters": [{
    "name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
    "description": "An ETag from an earlier answer: 304 when the document is unchanged."}]}
NOT_MODIFIED = {304: {"description": "Unchanged since the ETag given in If-None-Match."}}

router = APIRouter(tags=["catalogue"])


@router.get("/cards", response_model=Catalogue, responses=NOT_MODIFIED, openapi_extra=IF_NONE_MATCH)
async def list_cards(request: Request) -> Response:
    """Every card with its ports and parameter schema, and the packs that failed to load."""
    return documents(request).catalogue.answer(request)


@router.get("/cards/{card_id}", response_model=CardInfo, responses={**NOT_MODIFIED, **NOT_FOUND},
            openapi_extra=IF_NONE_MATCH)
async def get_card(card_id: str, request: Request) -> Response:
    """One card of the catalogue."""
    document = documents(request).cards.get(card_id)
    if document is None:
        raise not_found(f"card {card_id!r}")
    return document.answer(request)


@router.get("/types", response_model=TypeList, responses=NOT_MODIFIED, openapi_extra=IF_NONE_MATCH)
async def list_types(request: Request) -> Response:
    """The data types ports carry, with their colours."""
    return documents(request).types.answer(request)
