"""The card catalogue and the type list, serialized once with the strong ETag of their bytes.

Built from the registry's `Catalogue`, `CardInfo` and `TypeList` models and never from
TensorFlow: the bytes served are exactly those models' JSON.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pydantic import BaseModel

from nncards.contract.catalog import TypeInfo, TypeList
from nncards.contract.types import TYPES
from nncards.registry import registry


@dataclass(frozen=True)
class Document:
    """A JSON answer serialized once, with the strong ETag of its bytes."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, model: BaseModel) -> Document:
        body = json.dumps(model.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False).encode()
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    def matches(self, if_none_match: str | None) -> bool:
        """Whether an If-None-Match header names this document's ETag (or `*`)."""
        if not if_none_match:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or self.etag in tags


class CatalogueDocuments:
    """The catalogue, each card on its own, and the type list."""

    def __init__(self):
        catalogue = registry().catalogue()
        self.catalogue = Document.of(catalogue)
        self.cards = {card.id: Document.of(card) for card in catalogue.cards}
        self.types = Document.of(TypeList(types=[TypeInfo(**vars(t)) for t in TYPES.values()]))
