"""The card catalogue and the type list: serialized once, answered with an ETag, never loading TensorFlow."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from nncards.registry import registry
from nncards.types import TYPES
from nncards.server.errors import NOT_FOUND, not_found
from nncards.server.models import CardInfo, Catalogue, TypeList


@dataclass(frozen=True)
class Document:
    """A JSON answer serialized once, with the strong ETag of its bytes."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, content) -> Document:
        body = json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    def answer(self, if_none_match: str | None) -> Response:
        headers = {"ETag": self.etag, "Cache-Control": "no-cache"}
        if if_none_match and _matches(if_none_match, self.etag):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type="application/json", headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


class CatalogueDocuments:
    def __init__(self):
        catalogue = registry().catalog()
        self.catalogue = Document.of(catalogue)
        self.cards = {card["id"]: Document.of(card) for card in catalogue["cards"]}
        self.types = Document.of({"types": [t.as_json() for t in TYPES.values()]})


async def documents(request: Request) -> CatalogueDocuments:
    return request.app.state.catalogue


Documents = Annotated[CatalogueDocuments, Depends(documents)]
IfNoneMatch = Annotated[str | None, Header(description="An ETag from an earlier answer: 304 when unchanged.")]

router = APIRouter(tags=["catalogue"])
NOT_MODIFIED = {304: {"description": "Unchanged since the ETag given in If-None-Match."}}


@router.get("/cards", response_model=Catalogue, responses=NOT_MODIFIED)
async def list_cards(docs: Documents, if_none_match: IfNoneMatch = None) -> Response:
    """Every card with its ports and parameter schema, and the packs that failed to load."""
    return docs.catalogue.answer(if_none_match)


@router.get("/cards/{card_id}", response_model=CardInfo, responses={**NOT_MODIFIED, **NOT_FOUND})
async def get_card(card_id: str, docs: Documents, if_none_match: IfNoneMatch = None) -> Response:
    """One card of the catalogue."""
    document = docs.cards.get(card_id)
    if document is None:
        raise not_found(f"card {card_id!r}")
    return document.answer(if_none_match)


@router.get("/types", response_model=TypeList, responses=NOT_MODIFIED)
async def list_types(docs: Documents, if_none_match: IfNoneMatch = None) -> Response:
    """The data types ports carry, with their colours."""
    return docs.types.answer(if_none_match)
