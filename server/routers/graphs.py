"""`POST /graphs/validate`, `POST /graphs/import`."""

from __future__ import annotations

import email.parser
from typing import Annotated

from fastapi import APIRouter, Query, Request

from nncards.contract.catalog import ValidationResult
from nncards.contract.errors import ErrorCode, NncardsError
from nncards.contract.graph import Graph
from nncards.contract.run import Run
from nncards.interchange.keras_import import screen_model_file
from nncards.server.dependencies import InterchangeDep, ValidationDep
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


MODEL_FILE = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {"type": "object", "description": "A Keras JSON config (`model.to_json()`)."}},
    "application/x-hdf5": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"},
        "weights_file": {"type": "string", "format": "binary",
                         "description": "With a Keras 2 JSON config: the HDF5 file its `save_weights` wrote."}}}},
}}}


def _model_files(body: bytes, content_type: str) -> tuple[bytes, bytes | None]:
    """The model file of the request (the body itself, or the `file` part of a multipart form)
    and the weights file of a multipart form's `weights_file` part."""
    if not content_type.startswith("multipart/form-data"):
        return body, None
    message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True) or b""
             for part in (message.walk() if message.is_multipart() else ())}
    if "file" not in parts:
        raise NncardsError(ErrorCode.BAD_REQUEST, "The multipart form has no `file` part.")
    return parts["file"], parts.get("weights_file")


@router.post("/graphs/import", response_model=Graph | Run, response_model_exclude_unset=True,
             responses=ERROR_RESPONSES, openapi_extra=MODEL_FILE)
async def import_graph(request: Request, interchange: InterchangeDep,
                       weights: Annotated[bool, Query(description="Answer a RUN holding the graph and the "
                                                      "model's weights (base64 arrays) instead of the graph.")] = False,
                       ) -> Graph | Run:
    """A Keras model (a `.keras` file, a Keras 2 `.h5` file, or a Keras JSON config of Keras 3 or
    Keras 2) as a graph: every layer its card.

    A Keras 2 JSON config's weights come as the `weights_file` part of a multipart form (the
    answer is then a RUN). The file is read as data, never run. A model with layers no card expresses answers 422
    `import_unsupported` listing each of them; a file that is no Keras model (a corrupt one
    included, and one that crashes the process reading it) 400 `bad_request`; a body over the
    server's limit, or a model needing more memory than the server has, 413 `too_large`.
    """
    data, weights_file = _model_files(await request.body(), request.headers.get("content-type", ""))
    if not data:
        raise NncardsError(ErrorCode.BAD_REQUEST, "The request has no model file in its body.")
    weights = weights or weights_file is not None
    # a file that is no model is answered here, without the worker
    screen_model_file(data, with_weights=weights and weights_file is None)
    document = await interchange.import_model(data, weights, weights_file)
    return Run.model_validate(document) if weights else Graph.model_validate(document)
