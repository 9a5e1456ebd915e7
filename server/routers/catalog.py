"""The card catalogue and the type list: pre-serialized, pre-gzipped, answered with an ETag, never loading TensorFlow.

These are the hottest routes, and they must answer as fast as a bare Starlette app serving the
same bytes (benchmarks/catalog.py). FastAPI's request handling (parameter solving, the
response's validation, its Response object) and its router's matching cost several times the
rest of the request, so these routes are `DocumentRoute`s: described in the OpenAPI document
like any route (their `response_model`, the If-None-Match header, 304 and 404), but answered by
a raw ASGI handler that sends headers built at start-up; and `DocumentLane`, the innermost
middleware (inside the access checks, outside FastAPI's router), hands a GET of their paths
straight to them. Their endpoints only pick the document.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from nncards.contract.catalog import CardInfo, Catalogue, TypeList
from nncards.contract.errors import NncardsError
from nncards.server.dependencies import CatalogueDep, get_catalogue
from nncards.server.errors import NOT_FOUND, error_response, not_found
from nncards.server.services.catalogue import Document

IF_NONE_MATCH = {"parameters": [{
    "name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
    "description": "An ETag from an earlier answer: 304 when the document is unchanged."}]}
ANSWERS = {304: {"description": "Unchanged since the ETag given in If-None-Match."},
           200: {"description": "The document; gzipped (`Content-Encoding: gzip`, its own ETag) when "
                 "Accept-Encoding allows it."}}


class DocumentRoute(APIRoute):
    """A route whose endpoint returns a `Document`, answered in the encoding the request accepts.

    The endpoint is called with the catalogue documents (those `get_catalogue` gives, or its
    override's when a test sets one) and the path's parameters.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in self.methods:
            return await super().handle(scope, receive, send)  # 405, as any route answers it
        override = scope["app"].dependency_overrides.get(get_catalogue)
        # `get_catalogue` itself, without the Request it would need built.
        documents = scope["app"].state.catalogue if override is None else await override(Request(scope))
        try:
            document: Document = await self.endpoint(documents=documents, **scope["path_params"])
        except NncardsError as exc:  # answered here: the lane runs outside the application's error handlers
            return await error_response(exc.code, exc.message, exc.problems)(scope, receive, send)
        accept_encoding = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                accept_encoding = value
            elif name == b"if-none-match":
                if_none_match = value
        representation = document.for_encodings(accept_encoding)
        if representation.matches(if_none_match):
            await send({"type": "http.response.start", "status": 304, "headers": representation.not_modified_headers})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": representation.headers})
        await send({"type": "http.response.body", "body": representation.body})


class DocumentLane:
    """Middleware handing a GET of a `DocumentRoute`'s path (under `prefix`) straight to that route."""

    def __init__(self, app: ASGIApp, prefix: str, routes: list[DocumentRoute]):
        self.app = app
        self.lanes = [(compile_path(prefix + route.path)[0], route) for route in routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            for path, route in self.lanes:
                match = path.match(scope["path"])
                if match:
                    scope["path_params"] = match.groupdict()
                    return await route.handle(scope, receive, send)
        await self.app(scope, receive, send)


router = APIRouter(tags=["catalogue"], route_class=DocumentRoute)


@router.get("/cards", response_model=Catalogue, responses=ANSWERS, openapi_extra=IF_NONE_MATCH)
async def list_cards(documents: CatalogueDep) -> Document:
    """Every card with its ports and parameter schema, and the packs that failed to load."""
    return documents.catalogue


@router.get("/cards/{card_id}", response_model=CardInfo, responses={**ANSWERS, **NOT_FOUND},
            openapi_extra=IF_NONE_MATCH)
async def get_card(card_id: str, documents: CatalogueDep) -> Document:
    """One card of the catalogue."""
    document = documents.cards.get(card_id)
    if document is None:
        raise not_found(f"card {card_id!r}")
    return document


@router.get("/types", response_model=TypeList, responses=ANSWERS, openapi_extra=IF_NONE_MATCH)
async def list_types(documents: CatalogueDep) -> Document:
    """The data types ports carry, with their colours."""
    return documents.types
