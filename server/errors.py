"""The error envelope of CONTRACT §5 on every error answer, FastAPI's and Starlette's own included."""

from __future__ import annotations

import email.message
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from nncards.contract.errors import STATUS_OF_CODE, ErrorCode, ErrorEnvelope, NncardsError, Problem, error_body

# The code of an error answer that only has a status (Starlette's 404 and 405, a 413): the first
# code answered with that status (request_invalid before graph_invalid and import_unsupported).
CODE_OF_STATUS: dict[int, ErrorCode] = {}
for _code, _status in STATUS_OF_CODE.items():
    CODE_OF_STATUS.setdefault(_status, _code)

ERROR_RESPONSES = {
    status: {"model": ErrorEnvelope, "description": f"`{code}`: the error envelope"}
    for status, code in ((400, ErrorCode.BAD_REQUEST), (413, ErrorCode.TOO_LARGE), (422, ErrorCode.REQUEST_INVALID))
}
ACCESS_ERRORS = {
    401: {"model": ErrorEnvelope, "description": "`unauthorized`: the server has a token and the request did not "
          "carry it (`Authorization: Bearer TOKEN`)."},
    403: {"model": ErrorEnvelope, "description": "`forbidden`: a Host the server does not answer for, or a "
          "state-changing request from a page of another origin."},
}
NOT_FOUND = {404: {"model": ErrorEnvelope, "description": "`not_found`: no such card or run"}}
# Every route may also answer 404/405 (unknown path or method) or 500: documented once, app-wide.
ANY_ERROR = {"default": {"model": ErrorEnvelope, "description": "Any other error answer: the error envelope"}}


def as_json_responses(responses: dict) -> dict:
    """Error answers documented as application/json on a route whose own media type is another.

    FastAPI documents a response `model` under the route's media type (text/event-stream for
    the events route), but errors are always answered as JSON.
    """
    reference = {"$ref": "#/components/schemas/ErrorEnvelope"}
    return {status: {"description": response["description"], "content": {"application/json": {"schema": reference}}}
            for status, response in responses.items()}

log = logging.getLogger("nncards.server")


def error_response(code: ErrorCode, message: str, problems: list[Problem] | None = None,
                   headers: dict | None = None, status: int | None = None) -> JSONResponse:
    """The envelope, answered with the status of its code (or `status`, for Starlette's own errors)."""
    return JSONResponse({"error": error_body(code, message, problems)}, headers=headers,
                        status_code=status or STATUS_OF_CODE[code])


def not_found(what: str) -> NncardsError:
    return NncardsError(ErrorCode.NOT_FOUND, f"There is no {what}.")


def json_path(error: dict, body: Any) -> str:
    """Where a field sits in the JSON body, as in `graph/nodes/0/id` ('' for the body itself).

    Pydantic's location also names the union member it tried (`fit` for a step, `literal[...]`
    or `list[...]` for a loss): following the body itself keeps only the keys and indexes that
    are there, and the last one when the error is that it is missing.
    """
    location = tuple(error["loc"])
    if not location or location[0] != "body":
        return "/".join(str(part) for part in location)
    path, value = [], body
    for index, part in enumerate(location[1:], start=2):
        if isinstance(value, dict) and part in value or isinstance(value, list) and isinstance(part, int) \
                and -len(value) <= part < len(value):
            path.append(str(part))
            value = value[part]
        elif index == len(location) and error["type"] == "missing":
            path.append(str(part))
    return "/".join(path)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _nncards_error(request: Request, exc: NncardsError) -> JSONResponse:
    # The service's own errors may carry their status (503) and headers (Retry-After).
    status = getattr(exc, "status", None) or STATUS_OF_CODE.get(exc.code, 400)
    return error_response(exc.code, exc.message, exc.problems, headers=getattr(exc, "headers", None), status=status)


async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    body_errors = any(e["loc"] and e["loc"][0] == "body" for e in errors)
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(ErrorCode.BAD_REQUEST, "The request body is not valid JSON.")
    if body_errors and request.headers.get("content-length") not in (None, "0") \
            and not _is_json(request.headers.get("content-type")):
        return error_response(ErrorCode.BAD_REQUEST, "The request body must be JSON, sent as application/json "
                              f"(got content type {request.headers.get('content-type')!r}).")
    problems = []
    for error in errors:
        path = json_path(error, exc.body)
        received = error.get("input")
        # Scalars are echoed; objects and lists (possibly the whole body) are left out of the answer.
        echo = {"received": received} if received is None or isinstance(received, (bool, int, float, str)) else {}
        problems.append(Problem(code=ErrorCode.REQUEST_INVALID, port=path, message=f"{path or 'body'}: {error['msg']}",
                                **echo))
    first = problems[0].message if problems else "the request does not fit its model"
    more = f" ({len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return error_response(ErrorCode.REQUEST_INVALID, f"The request does not fit its model: {first}{more}.", problems)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = CODE_OF_STATUS.get(exc.status_code,
                              ErrorCode.BAD_REQUEST if exc.status_code < 500 else ErrorCode.INTERNAL_ERROR)
    messages = {
        404: f"There is nothing at {request.url.path}.",
        405: f"{request.method} is not allowed on {request.url.path}.",
        413: "The request body is larger than the server's limit.",
    }
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**(headers or {}), **_allow_header(request)}
    return error_response(code, messages.get(exc.status_code, str(exc.detail)), headers=headers,
                          status=exc.status_code)


def _allow_header(request: Request) -> dict:
    """`Allow` with every method the OpenAPI document gives the path.

    FastAPI makes one route per method, and the first route that matches the path alone raises
    the 405 with its own methods only (OPTIONS /runs would allow just POST).
    """
    methods = {method.upper() for template, operations in request.app.openapi()["paths"].items()
               if compile_path(template)[0].match(request.url.path) for method in operations}
    return {"Allow": ", ".join(sorted(methods))} if methods else {}


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(ErrorCode.INTERNAL_ERROR, f"The server failed: {type(exc).__name__}.")


def install(app: FastAPI) -> None:
    app.add_exception_handler(NncardsError, _nncards_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
