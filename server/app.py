"""The FastAPI application (`create_app`, its `lifespan`) and `nncards serve`.

The API's docs page (`/docs`) is Swagger UI served from a copy shipped as a Python package
(`swagger-ui-bundle-v2`), not from a CDN: it works offline. ReDoc, which only comes from a
CDN, is not served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable
from contextlib import asynccontextmanager
from functools import partial
from http import HTTPStatus
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from opentelemetry import _logs, metrics, trace
from starlette.routing import Match, Mount
from starlette.types import Scope
import httptools
import uvicorn
from swagger_ui_bundle import swagger_ui_path
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

import nncards
from nncards.contract import number_grid
from nncards.contract.errors import ErrorCode, error_body
from nncards.server import errors
from nncards.server.middleware import (BODY_RECEIVER, LARGE_BODY_BYTES, SECURITY_HEADERS, Ahead, BodyLimit,
                                       Guard)
from nncards.server.routers import catalog, graphs, health, runs
from nncards.server.services.catalogue import CatalogueDocuments
from nncards.server.services.interchange import InterchangeService
from nncards.server.services.runs import Retention, RunService
from nncards.server.services.store import RunStore, StoreError
from nncards.server.services.validation import ValidationService
from nncards.server.services.workers import LocalExecutor
from nncards.server.settings import ExecutorKind, Settings, is_loopback

API = "/api/v1"
WARM_UP_DELAY_SECONDS = 1.0


class EditorMount(Mount):
    """The editor's files at `/`, leaving every path under the API to the API's routes.

    A mount at `/` matches any path: an API path asked with a method it does not take would
    otherwise be answered by the static files (405 allowing GET and HEAD) rather than by the
    API's router (405 allowing the route's own methods).
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["path"].startswith(API + "/"):
            return Match.NONE, {}
        return super().matches(scope)


def assets_dir() -> Path | None:
    """The `assets` folder: shipped inside the package, or beside it in a source checkout."""
    for candidate in (Path(str(files("nncards"))) / "assets", Path(nncards.__file__).resolve().parent.parent / "assets"):
        if candidate.is_dir():
            return candidate
    return None


@asynccontextmanager
async def lifespan(app: FastAPI):
    """The services behind the dependencies, for as long as the server runs."""
    settings: Settings = app.state.settings
    store = app.state.store or RunStore(settings.data_dir)
    app.state.validation = ValidationService(settings.limits, settings.validation_cache_size,
                                             settings.validation_workers, settings.validation_memo_bytes,
                                             idle_seconds=settings.worker_idle_seconds)
    if settings.executor == ExecutorKind.RAY:
        from nncards.server.services.cluster import RayExecutor  # Ray is imported only when asked for

        executor = partial(RayExecutor, address=settings.ray_address or "auto", limits=settings.limits,
                           max_runs=settings.ray_max_runs)
    else:
        executor = partial(LocalExecutor, size=settings.workers, threads=settings.worker_threads,
                           niceness=settings.run_niceness, limits=settings.limits, results_dir=store.results,
                           max_result_elements=settings.max_result_elements,
                           idle_seconds=settings.worker_idle_seconds, memo_bytes=settings.validation_memo_bytes)
    app.state.runs = RunService(store, settings.limits, executor, max_queued=settings.max_queued_runs,
                                retention=Retention(settings.keep_runs, settings.keep_bytes),
                                max_result_elements=settings.max_result_elements)
    app.state.interchange = InterchangeService(idle_seconds=settings.worker_idle_seconds)
    await app.state.runs.start()
    number_grid.prepare_in_background()  # its first build on a machine (about 1 s) in no request's time
    if settings.warm_up:
        # Importing TensorFlow keeps a core and the GIL busy for seconds: begin once the server
        # answers, so that its start and the editor's first catalogue request come first.
        for service in (app.state.validation, app.state.runs.executor):
            asyncio.get_running_loop().call_later(WARM_UP_DELAY_SECONDS, service.warm_up)
    try:
        yield
    finally:
        await app.state.runs.close()
        app.state.validation.close()
        app.state.interchange.close()
        store.close()


def prepare_for_run(app: FastAPI) -> runs.EarlyBuild | None:
    """A run request is arriving: the worker that runs it starts now, if it must, and so do the
    validation workers unless that run worker can validate the graph itself (see `create_run`):
    starting both would import TensorFlow twice at once on the same cores. Its body, once arrived,
    goes to an `EarlyBuild`."""
    if not hasattr(app.state, "runs"):  # the services are not up (a test may serve the catalogue alone)
        return None
    app.state.runs.prepare()
    if not app.state.runs.executor.can_validate():
        app.state.validation.prepare()
    return runs.EarlyBuild(app.state.runs, app.state.validation)


# The classes of OpenTelemetry's global providers before anything configures them: they record nothing.
UNSET_PROVIDERS = {"ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider", "NoOpMeterProvider",
                   "ProxyLoggerProvider", "NoOpLoggerProvider"}


def native_telemetry() -> TelemetryConfig:
    """FastAPI's OpenTelemetry spans, metrics and logs, on only when something will record them.

    FastAPI asks OpenTelemetry's global providers on every request whether one is configured
    (environment reads included: a quarter of a catalogue answer's time, and what kept it behind a
    bare Starlette app). nncards asks once, when it makes the application: a provider configured
    by then (by `opentelemetry-instrument`, or by code that imports nncards), or FastAPI's own
    configuration from the environment (`FASTAPI_OTEL_AUTO_CONFIGURE=true`), keeps FastAPI's
    telemetry as it comes; otherwise it is off."""
    if os.getenv("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true":
        return {}
    providers = (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider())
    if any(type(provider).__name__ not in UNSET_PROVIDERS for provider in providers):
        return {}
    return {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings | None = None, store: RunStore | None = None) -> FastAPI:
    """The application; `store`, when given, is the run store opened (and its data directory
    claimed) beforehand, else the lifespan opens one."""
    settings = settings or Settings()
    app = FastAPI(
        title="nncards", version=nncards.__version__, lifespan=lifespan, telemetry=native_telemetry(),
        responses=errors.ANY_ERROR, docs_url=None, redoc_url=None,
        generate_unique_id_function=lambda route: route.name,  # operationIds: the route functions' names
        description="Card catalogue, graph validation and graph execution for visual node editors.",
    )
    app.state.settings = settings
    app.state.store = store
    add_docs_page(app)
    app.state.catalogue = CatalogueDocuments()  # no lifespan needed: a test may serve the catalogue alone
    errors.install(app)
    for router in (catalog.router, graphs.router, runs.router, health.router):
        app.include_router(router, prefix=API, responses={422: errors.ERROR_RESPONSES[422], **errors.ACCESS_ERRORS})
    app.add_middleware(catalog.DocumentLane, prefix=API, routes=catalog.router.routes)  # innermost: added first
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, max_depth=settings.max_json_depth)
    app.add_middleware(Ahead, method="POST", path=f"{API}/runs", call=lambda: prepare_for_run(app))
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["ETag"])
    app.add_middleware(Guard, allowed_hosts=settings.allowed_hosts, cors_origins=settings.cors_origins,
                       token=settings.token, api_prefix=API)
    assets = assets_dir()
    if assets is not None:
        app.mount("/assets", StaticFiles(directory=assets), name="assets")
        if (assets / "editor").is_dir():
            app.router.routes.append(EditorMount("/", StaticFiles(directory=assets / "editor", html=True), name="editor"))
    return app


def add_docs_page(app: FastAPI) -> None:
    """`/docs`: Swagger UI from the local copy, reading `/openapi.json`."""
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs_page() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="nncards API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


# A large body is read 1 MiB at a time instead of asyncio's 256 KiB: each read costs the event loop
# a round of parsing, flow control and waking the app (a 126 MiB body: 15-20 ms less CPU). Small
# requests keep the small reads: a read allocates its whole size before it shrinks to what came.
LARGE_BODY_READ_BYTES = 2**20
HEAD_LIMIT_BYTES = 16 * 1024  # h11's limit (uvicorn's default), which the server answered with before
LINGER_SECONDS = 2.0  # how long a refused connection's later bytes are read and dropped before it closes


class ServerProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol on httptools' C parser (a 126 MiB request body arrives in 150-200 ms
    instead of h11's 255-275 ms), keeping two answers h11 gave:

    - a connection that sends nothing at all within the keep-alive timeout is closed (uvicorn
      only times out connections that have finished a request): idle sockets cannot pile up
      until the server runs out of file descriptors;
    - a request head, or a chunked body's trailers, still incomplete past HEAD_LIMIT_BYTES is
      refused with 400 and the connection closed: httptools buffers a header of any length, so a
      client could fill the server's memory with one endless header line.

    And one h11 never gave: a request head (or chunked trailers, or a chunk's size line) must be
    complete within the keep-alive timeout of when it began. uvicorn cancels its idle timer on
    every read, so a client sending one header byte every few seconds held its connection forever,
    and a thousand such clients filled --max-connections (slowloris). Past the deadline the client
    gets 408 and the connection is closed, as Apache's mod_reqtimeout and RFC 9110 (15.5.9) do;
    nginx's client_header_timeout records 408 but closes without a word. We answer because an
    honest slow client then learns why, and the answer costs one write. The body is not under
    this deadline: a large upload may take as long as it needs.

    The head is measured per read, as h11 measured its buffer: what is still incomplete after a
    read counts, so a head arriving in one read is never refused and a refused one held at most
    the limit and two reads (asyncio reads at most 256 KiB at a time).

    A large body (a Content-Length over LARGE_BODY_BYTES, no Transfer-Encoding) is received
    straight into the buffer it ends in, when the app asks for it that way (`BodyLimit`, through
    the scope's BODY_RECEIVER, once the request has passed `Guard` and the size limit): the socket
    is read into that buffer (`BodyIntake`) instead of into a fresh bytes object per read, which
    httptools copied into another for `on_body`, uvicorn queued and BodyLimit copied into its
    buffer, all in fresh memory (a 126 MiB body: 15-25 ms less from head to app, a fifth less
    server CPU). httptools does not see that body: a fresh parser reads what follows it. Until
    the app asks, or when it never does (a request refused before its body is read), the body
    goes the old way, reading paused while the app does not take it: no buffer is made for a
    body nobody wants.
    """

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.in_head = self.head_began = False
        self.head_bytes = 0
        self.head_deadline: asyncio.TimerHandle | None = None
        self.lingering: asyncio.TimerHandle | None = None
        self.after_last_request = False
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        if self.lingering is not None:
            self.lingering.cancel()
        if self.scope is not None:
            # A receiver the app never took refers to this protocol, which refers to the scope: the
            # collector, not the connection's end, would free them.
            self.scope.pop(BODY_RECEIVER, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Refused: dropped until the client closes or LINGER_SECONDS pass. Past the body of a request
        # that ends its connection, received by a BodyIntake: dropped, as httptools drops them
        # (`lenient_data_after_close`), for the fresh parser has not seen that request.
        if self.lingering is not None or self.after_last_request:
            return
        self.head_began = False
        super().data_received(data)
        if self.transport.is_closing() or self.lingering is not None:
            return
        # Armed by a read that leaves the connection waiting for a head: one begun and incomplete
        # (a head arriving whole costs no timer), or none begun while nothing is being answered
        # (llhttp skips blank lines before a request without beginning one, so "\r\n" every few
        # seconds would otherwise hold the connection too).
        waiting = self.in_head or not self._answering
        if waiting and self.head_deadline is None:
            self.head_deadline = self.loop.call_later(self.timeout_keep_alive, self._head_too_slow)
        if not self.in_head or self.head_began:
            return
        self.head_bytes += len(data)
        if self.head_bytes > HEAD_LIMIT_BYTES:
            self.logger.warning("Request head longer than %d bytes.", HEAD_LIMIT_BYTES)
            self.send_400_response(f"The request head (or a chunked body's trailers) is longer than "
                                   f"{HEAD_LIMIT_BYTES} bytes.")

    def _head_begins(self) -> None:
        self.in_head = self.head_began = True
        self.head_bytes = 0

    def _head_ends(self) -> None:
        self.in_head = False
        self._cancel_head_deadline()

    def _cancel_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_too_slow(self) -> None:
        self.head_deadline = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:  # closed or upgraded
            return
        self.logger.warning("Request head not complete within %g s.", self.timeout_keep_alive)
        answering = self._answering
        if answering and not self.cycle.more_body:
            # A pipelined head behind a request still being answered: that answer finishes, then
            # the connection closes (as at shutdown) instead of cutting the answer short.
            self.cycle.keep_alive = False
        elif answering and self.cycle.response_started:
            self.transport.close()  # a 408 now would land inside the answer already begun
        else:
            self._answer_and_close(408, f"The request head was not complete within {self.timeout_keep_alive:g} s.")

    @property
    def _answering(self) -> bool:
        """Whether an answer to a request of this connection is under way."""
        return self.cycle is not None and not self.cycle.response_complete

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request that is not HTTP (its text: "Invalid HTTP request
        received."), given as the error envelope every other refusal uses."""
        if msg == "Invalid HTTP request received.":
            msg = "The request is not valid HTTP/1.1."
        self._answer_and_close(400, msg)

    def _answer_and_close(self, status: int, message: str) -> None:
        """An answer from the protocol itself, before any application sees the request: the error
        envelope (`bad_request`; the status says which refusal) with the headers Guard gives every
        answer, then the connection closes (lingering, when no other answer is under way)."""
        body = json.dumps({"error": error_body(ErrorCode.BAD_REQUEST, message)}).encode()
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode(),
                *(name + b": " + value for name, value in self.server_state.default_headers),
                b"content-type: application/json", b"content-length: %d" % len(body), b"connection: close",
                *(name + b": " + value for name, value in SECURITY_HEADERS)]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self._cancel_head_deadline()
        if self._answering or not self.transport.can_write_eof():
            self.transport.close()
            return
        # A lingering close (RFC 9112, 9.6): closed with the client's later bytes unread (a trickled
        # head keeps sending), the connection would be reset, and a reset may throw the answer away
        # before the client reads it. Our side is shut, what comes is dropped, and the connection
        # closes when the client closes its side or LINGER_SECONDS after the answer.
        self.transport.write_eof()
        self.lingering = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def on_message_begin(self) -> None:
        self._head_begins()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head_ends()
        super().on_headers_complete()
        if self.scope["method"] in ("GET", "HEAD"):  # the catalogue's requests, with no body to read
            return
        headers = dict(self.headers)
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > LARGE_BODY_BYTES:
            self._read_bytes(LARGE_BODY_READ_BYTES)  # until the app asks for the body, or when it never does
            # (Not for an upgrade, for which uvicorn made no cycle.)
            if self.cycle is not None and self.cycle.scope is self.scope and b"transfer-encoding" not in headers:
                self.scope[BODY_RECEIVER] = partial(self._receive_body, self.cycle)

    async def _receive_body(self, cycle: RequestResponseCycle, body: bytearray,
                            landed: Callable[[int, int], None]) -> bool:
        """`cycle`'s request body received into `body` (see middleware.BodyReceiver)."""
        if cycle.waiting_for_100_continue and not self.transport.is_closing():  # as uvicorn's `receive` asks
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        # What httptools read before the app asked: the head's read, and reads until reading paused.
        parsed = len(cycle.body)
        body[:parsed] = cycle.body
        cycle.body = bytearray()
        cycle.message_event.clear()  # taken, as `receive` takes it
        landed(0, parsed)
        if cycle.disconnected:
            return False
        if not cycle.more_body:  # httptools read all of it before the app asked
            return True
        intake = BodyIntake(self, cycle, body, parsed, landed)
        self.transport.set_protocol(intake)
        self.flow.resume_reading()
        return await intake.arrived

    def body_received(self, cycle: RequestResponseCycle) -> None:
        """A BodyIntake has received the rest of `cycle`'s body: this protocol reads again, with a
        fresh parser (the old one still waits for that body), as uvicorn's makes it."""
        cycle.more_body = False
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.after_last_request = not cycle.keep_alive
        self._read_bytes(None)
        self.transport.set_protocol(self)

    def on_chunk_header(self) -> None:  # a chunk's size line, or the last chunk's trailers
        self._head_begins()

    def on_body(self, body: bytes) -> None:
        self._head_ends()
        # uvicorn gathers the pieces read since the app last asked in a bytearray, then hands them on
        # as bytes of it: two copies of every piece, into fresh memory (a 126 MiB body: some 80 ms).
        # A piece waiting alone is handed on as it came instead (`b"" + piece` is the piece, and
        # `bytes()` of bytes no copy); pieces that wait together (a chunked body's small chunks)
        # are gathered in a bytearray as before, since adding bytes to bytes copies all of them.
        if not self.cycle.body:
            self.cycle.body = b""
        elif type(self.cycle.body) is bytes:
            self.cycle.body = bytearray(self.cycle.body)
        super().on_body(body)

    def on_chunk_complete(self) -> None:
        self._head_ends()

    def on_message_complete(self) -> None:
        self._head_ends()
        self._read_bytes(None)
        super().on_message_complete()

    def _read_bytes(self, size: int | None) -> None:
        """Read up to `size` bytes at a time (None: asyncio's 256 KiB), where the transport lets us
        (asyncio's does; uvloop's reads as it likes)."""
        if hasattr(type(self.transport), "max_size"):
            self.transport.max_size = size or type(self.transport).max_size


class BodyIntake(asyncio.BufferedProtocol):
    """The transport's protocol while the rest of a large body arrives: asyncio (or uvloop) reads
    the socket with `recv_into` what is left of the body's buffer, never past the body, so that a
    pipelined request behind it stays in the socket for the ServerProtocol. Each read is told to
    `landed` as it comes (the middleware reads its skeleton there, while the bytes are in the
    cache: less CPU than reading the whole body again after its last byte); all else the
    transport says goes to the connection's ServerProtocol."""

    def __init__(self, protocol: ServerProtocol, cycle: RequestResponseCycle, body: bytearray, received: int,
                 landed: Callable[[int, int], None]):
        self.protocol, self.cycle, self.body, self.received, self.landed = protocol, cycle, body, received, landed
        self.arrived: asyncio.Future[bool] = protocol.loop.create_future()

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.body)[self.received:]

    def buffer_updated(self, nbytes: int) -> None:
        self.landed(self.received, self.received + nbytes)
        self.received += nbytes
        if self.received == len(self.body):
            self.protocol.body_received(self.cycle)
            self._settle(True)

    def eof_received(self) -> bool | None:
        return self.protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.connection_lost(exc)
        self._settle(False)

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()

    def _settle(self, arrived: bool) -> None:
        if not self.arrived.done():  # done: cancelled with the app's task (the server stopping)
            self.arrived.set_result(arrived)


def serve(settings: Settings) -> None:
    """Run the server; a setting or data directory it cannot start with ends it with one sentence."""
    if settings.token == "auto":
        settings = settings.model_copy(update={"token": secrets.token_urlsafe(24)})
        shown_host = settings.host if is_loopback(settings.host) else socket.gethostname()
        print(f"The editor, with this server's token: http://{shown_host}:{settings.port}/?token={settings.token}",
              flush=True)
    refusal = settings.refusal()
    if refusal:
        raise SystemExit(f"nncards serve: {refusal}")
    try:
        store = RunStore(settings.data_dir)
    except StoreError as exc:
        raise SystemExit(f"nncards serve: {exc}") from None
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    # Event streams stay open until their run ends: a stop waits a few seconds for them, not forever.
    uvicorn.run(create_app(settings, store), host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=5, http=ServerProtocol,
                timeout_keep_alive=settings.idle_connection_seconds, limit_concurrency=settings.max_connections)
