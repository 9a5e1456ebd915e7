"""The server's ASGI middleware, outermost first: `Guard` (who may ask), `Ahead` (what to start
before a body arrives), then `BodyLimit` (what may be sent).

`Guard` answers only requests whose `Host` is one of the server's names (a page reaching the
server through a DNS name rebound to 127.0.0.1 sends its own name) and refuses state-changing
requests from a foreign `Origin` (403 `forbidden`); with a token, every API route but
`GET /api/v1/health` needs it (401 `unauthorized`). Every answer carries headers that keep the
server's pages out of other sites' frames and stop browsers from guessing content types.

`Ahead` calls a function as soon as a request for one route comes past `Guard`, before its body
is read: a run request's workers start importing TensorFlow while tens of MiB of body arrive
and are parsed, not after. What the function returns, when not None, is the request's
`BodyWatcher`, told by `BodyLimit` of the whole body once it has passed the limits, before it is
parsed.

`BodyLimit` reads a request body up to the size limit (refusing at once a declared
Content-Length over it: 413 `too_large`; Starlette's own limiter answers in plain text) and
refuses JSON nested deeper than the depth limit (422 `request_invalid`) before any parser
recurses into it, then hands the body on. The skeleton the depth is measured on is made piece by
piece as the body arrives (`run_json.SkeletonReader`); what is left after the last piece runs on a
thread for a body over 1 MiB, so that a 126 MB run request does not hold up the other clients.
A large body the server offers to receive straight into its buffer (the scope's `BodyReceiver`:
nncards' `ServerProtocol` offers one) is taken that way once it has passed the size limit: the
limits and the skeleton stay here, the reading of the socket stays with the protocol.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import hmac
import logging
import mmap
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nncards.contract import number_grid
from nncards.contract.errors import ErrorCode, Problem
from nncards.contract.run_json import NUMBER_AND_SPACE, STRING, SkeletonReader, skeleton
from nncards.server.errors import error_response
from nncards.server.settings import LOOPBACK_NAMES

log = logging.getLogger("nncards.server")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # the editor's URL may carry the token
]
OPEN_ROUTES = {("GET", "/api/v1/health"), ("HEAD", "/api/v1/health")}


def host_name(host: str) -> str:
    """The name of a Host header, without its port (`[::1]:8000` → `::1`)."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    def __init__(self, app: ASGIApp, *, allowed_hosts: list[str], cors_origins: list[str], token: str | None,
                 api_prefix: str):
        self.app = app
        self.hosts = {name.lower() for name in (*LOOPBACK_NAMES, *allowed_hosts)}
        self.any_host = "*" in allowed_hosts
        self.origins = set(cors_origins)
        self.token = token.encode() if token else None
        self.api_prefix = api_prefix
        # Clients send the same few Host values again and again: each is judged once.
        self.answers_for = functools.lru_cache(maxsize=256)(
            lambda host: self.any_host or host_name(host).lower() in self.hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        refusal = self.refusal(scope)
        if refusal is not None:
            return await refusal(scope, receive, send_with_headers)
        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope: Scope):
        host, origin, authorization = first_headers(scope, b"host", b"origin", b"authorization")
        host = host or ""
        if not self.answers_for(host):
            return error_response(ErrorCode.FORBIDDEN, f"This server does not answer for the host name "
                                  f"{host_name(host)!r}; start it with --allowed-hosts to add it.")
        method = scope["method"]
        if method not in SAFE_METHODS and origin is not None and origin not in self.origins \
                and not self._same_origin(origin, host, scope):
            return error_response(ErrorCode.FORBIDDEN, f"Requests that change state are not taken from pages "
                                  f"of another origin ({origin}).")
        path = scope["path"]
        # OPTIONS reveals nothing, and a CORS preflight never carries the token.
        if self.token is not None and path.startswith(self.api_prefix + "/") and method != "OPTIONS" \
                and (method, path) not in OPEN_ROUTES:
            if not self._has_token(authorization or "", scope):
                return error_response(ErrorCode.UNAUTHORIZED, "This server needs its token: send "
                                      "Authorization: Bearer TOKEN.", headers={"WWW-Authenticate": "Bearer"})
        return None

    @staticmethod
    def _same_origin(origin: str, host: str, scope: Scope) -> bool:
        parts = urlsplit(origin)
        return parts.scheme == scope.get("scheme", "http") and parts.netloc.lower() == host.lower()

    def _has_token(self, authorization: str, scope: Scope) -> bool:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token):
            return True
        # An EventSource cannot send headers: a GET may carry the token in its query, as Jupyter's do.
        if scope["method"] == "GET":
            query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
            return any(hmac.compare_digest(value.encode(), self.token) for value in query.get("token", []))
        return False


def first_headers(scope: Scope, *names: bytes) -> list[str | None]:
    """The first value of each named header (lower-case names), as Starlette's `Headers.get` gives
    it, in one pass over the raw headers: Guard sees every request, and building a `Headers` and
    looking names up in it cost a catalogue answer a tenth of its time."""
    values: list[str | None] = [None] * len(names)
    for name, value in scope["headers"]:
        if name in names:
            index = names.index(name)
            if values[index] is None:
                values[index] = value.decode("latin-1")
    return values


BODY_WATCHER = "nncards.body_watcher"  # the scope's key for the request's BodyWatcher


class BodyWatcher(Protocol):
    def arrived(self, body: bytearray) -> None:
        """The whole body has arrived and is within the size and depth limits; it is parsed next
        (called on the event loop; nothing writes to `body` after)."""


class Ahead:
    def __init__(self, app: ASGIApp, method: str, path: str, call: Callable[[], BodyWatcher | None]):
        self.app, self.method, self.path, self.call = app, method, path, call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == self.method and scope["path"] == self.path:
            watcher = self.call()
            if watcher is not None:
                scope[BODY_WATCHER] = watcher
        await self.app(scope, receive, send)


DEPTH_CHUNK_BYTES = 4 * 2**20
NOT_NESTING = NUMBER_AND_SPACE + b',:"'
# +1 for an opening bracket, -1 for a closing one, 0 for any other byte.
_BRACKET_STEP = np.zeros(256, np.int8)
_BRACKET_STEP[list(b"[{")], _BRACKET_STEP[list(b"]}")] = 1, -1


def nesting_depth(body: bytes, structure: bytes | None = None) -> int:
    """How deep arrays and objects nest in a JSON text (vectorized: a body may be 64 MB).

    Strings are emptied first (their brackets are text). Without a backslash in the text the
    numbers and white space go too (`run_json.skeleton`, or `structure` when the caller has it):
    they hold no bracket and no quote, so no string boundary moves, and a body of numbers shrinks
    several times."""
    if b"[" not in body and b"{" not in body:
        return 0
    if structure is None:
        structure = skeleton(body) if b"\\" not in body else STRING.sub(b'""', body)
    if (counted := number_grid.nesting_depth(structure)) is not None:  # nncards' reader: 126 MB's in 2 ms
        return counted
    # Only brackets and braces count: the rest goes first, in one C pass (the skeleton of a body of
    # numbers is mostly commas: 126 MB of nested lists measured in 15 ms instead of 34).
    text = np.frombuffer(structure.translate(None, NOT_NESTING), np.uint8)
    deepest = depth = 0
    for start in range(0, len(text), DEPTH_CHUNK_BYTES):  # in chunks: bounded memory
        levels = depth + np.cumsum(_BRACKET_STEP[text[start:start + DEPTH_CHUNK_BYTES]], dtype=np.int32)
        deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


LARGE_BODY_BYTES = 1 << 20  # work on a larger body goes to a thread: the event loop answers others meanwhile


async def off_the_loop_when_large(size: int, function, *args):
    """`function(*args)`, on a thread when it works on a body of more than LARGE_BODY_BYTES."""
    if size > LARGE_BODY_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)


def _measured(body: bytearray, reader: SkeletonReader) -> tuple[bytes | None, int]:
    """The body's skeleton (None with a backslash) and nesting depth."""
    structure = reader.skeleton(body)
    return structure, nesting_depth(body, structure)


_new_bytearray = ctypes.pythonapi.PyByteArray_FromStringAndSize
_new_bytearray.restype, _new_bytearray.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_ssize_t]
_madvise = None
if hasattr(mmap, "MADV_HUGEPAGE"):  # Linux: transparent huge pages
    _madvise = ctypes.CDLL(None, use_errno=True).madvise
    _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
SMALL_PAGE_BYTES = mmap.PAGESIZE


def body_buffer(size: int) -> bytearray:
    """A bytearray of `size` bytes for a body's pieces to be copied into, its pages huge where the
    kernel allows (transparent huge pages in `madvise` mode: asked for, not given).

    This machine is slow to hand out fresh 4 KiB pages: a 126 MiB body grown by its pieces took
    110-150 ms, most of it page faults; copied into one buffer of huge pages, 35 ms. The buffer
    is left uninitialized (every byte is written before it is read): `bytearray(size)` would fault
    in and zero every small page first."""
    buffer = _new_bytearray(None, size)
    if size and _madvise is not None:
        start = ctypes.addressof(ctypes.c_char.from_buffer(buffer))  # the export ends with the statement
        first = -(-start // SMALL_PAGE_BYTES) * SMALL_PAGE_BYTES  # madvise takes whole pages inside the buffer
        end = (start + size) // SMALL_PAGE_BYTES * SMALL_PAGE_BYTES
        if end > first:
            _madvise(first, end - first, mmap.MADV_HUGEPAGE)  # a refusal leaves small pages: only slower
    return buffer


class BodyBuffers:
    """The buffers of large bodies, kept a while for the next bodies of the same length.

    The kernel hands out a fresh buffer's huge pages as the body lands in it, and on the project's
    machine that made benchmarks/runs.py's 126 MiB of lists take 73-293 ms to arrive where a buffer
    kept from an earlier request took 76-85 ms (6 requests each, through a live server): a client
    that sends a body of the same length again (a training set with each run) finds its buffer
    ready. A kept buffer is handed out again only when nothing else refers to it (a request, an
    array or a view of it each hold a reference, which the count shows), so a body still in use is
    never written over; at most `kept` buffers are kept, and those not taken for `seconds` are let
    go, so that an idle server gives their memory back."""

    def __init__(self, kept: int = 2, seconds: float = 30.0):
        self.kept, self.seconds = kept, seconds
        self._buffers: list[bytearray] = []
        self._letting_go: asyncio.TimerHandle | None = None

    def take(self, size: int) -> bytearray:
        """A buffer of `size` bytes (their values undefined): a kept one that is free, else a new one."""
        for buffer in self._buffers:
            # Free: referred to only by this list, this loop's variable and getrefcount's argument.
            if len(buffer) == size and sys.getrefcount(buffer) == 3:
                self._buffers.remove(buffer)
                break
        else:
            buffer = body_buffer(size)
        self._buffers = [*self._buffers, buffer][-self.kept:]
        self._let_go_later()
        return buffer

    @property
    def kept_bytes(self) -> int:
        return sum(len(buffer) for buffer in self._buffers)

    def _let_go_later(self) -> None:
        if self._letting_go is not None:
            self._letting_go.cancel()
        self._letting_go = asyncio.get_running_loop().call_later(self.seconds, self._buffers.clear)


RECEIVED_BODY = "nncards.received_body"  # the scope's key for what BodyLimit read


@dataclass(frozen=True)
class ReceivedBody:
    """A request body as BodyLimit read it, for the route to take without reading it again (a
    126 MB body's copies and skeleton cost a run request 0.3 s twice)."""

    body: bytearray  # filled as it arrived; nothing writes to it after
    structure: bytes | None  # run_json.skeleton(body), when the body has no backslash
    quotes: list[int] | None  # where its quotes are, when it has no backslash and few quotes


BODY_RECEIVER = "nncards.body_receiver"  # the scope's key for the request's BodyReceiver, when the server offers one


class BodyReceiver(Protocol):
    async def __call__(self, body: bytearray, landed: Callable[[int, int], None]) -> bool:
        """Receive the whole request body into `body`, a buffer of its declared length, asking the
        client for it as `receive()` would (Expect: 100-continue), calling `landed(start, end)` on
        the event loop as each range of it arrives; False when the client went away first."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, max_depth: int):
        self.app, self.max_bytes, self.max_depth = app, max_bytes, max_depth
        self.buffers = BodyBuffers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            return await self.app(scope, receive, send)
        # Taken out of the scope: it refers to the connection, which refers to the scope.
        receiver: BodyReceiver | None = scope.pop(BODY_RECEIVER, None)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        expected = int(declared) if declared is not None and declared.isdigit() else 0
        reader = SkeletonReader()
        if receiver is not None:  # offered for a declared length over LARGE_BODY_BYTES
            body = self.buffers.take(expected)
            if not await receiver(body, functools.partial(reader.feed, body)):
                return
        elif (body := await self._received_in_pieces(scope, receive, send, expected, reader)) is None:
            return
        structure, depth = await off_the_loop_when_large(len(body), _measured, body, reader)
        if depth > self.max_depth:
            log.warning("refused a %s %s body nested %d levels deep (limit %d)", scope["method"], scope["path"],
                        depth, self.max_depth)
            message = f"The request body nests arrays and objects {depth} levels deep, more than the limit of " \
                      f"{self.max_depth}."
            problem = Problem(code=ErrorCode.REQUEST_INVALID, port="", message=message, received=depth,
                              expected=f"at most {self.max_depth} levels")
            return await error_response(ErrorCode.REQUEST_INVALID, message, [problem])(scope, receive, send)
        scope[RECEIVED_BODY] = ReceivedBody(body, structure, reader.quote_positions())
        watcher: BodyWatcher | None = scope.get(BODY_WATCHER)
        if watcher is not None:
            watcher.arrived(body)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the client's disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _received_in_pieces(self, scope: Scope, receive: Receive, send: Send, expected: int,
                                  reader: SkeletonReader) -> bytearray | None:
        """The body as `receive()` gives it, fed to `reader`; None when the client went away, or
        when it sent more than the limit and was answered so."""
        # Each piece is copied in and skeletoned as it comes, not all at once after the last (joining
        # 2,000 pieces of a 126 MB body held the event loop 0.15 s). A large declared body gets its
        # buffer at once (`body_buffer`); past the declared length, or without one, the buffer grows.
        body = body_buffer(expected) if expected > LARGE_BODY_BYTES else bytearray()
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if received + len(chunk) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return None
            body[received:received + len(chunk)] = chunk
            received += len(chunk)
            reader.feed(chunk)
            if not message.get("more_body", False):
                break
        del body[received:]  # less than declared
        return body

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(ErrorCode.TOO_LARGE, f"The request body is larger than the limit of "
                                  f"{self.max_bytes} bytes.", headers={"Connection": "close"})
        await response(scope, receive, send)
