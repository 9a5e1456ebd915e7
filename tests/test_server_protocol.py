"""ServerProtocol in process, on a real socket: a large body is read in large pieces and arrives
whole, the next request on the connection is read in asyncio's small pieces again; pieces waiting
together are gathered in a bytearray; a large body BodyLimit asks for is received past httptools."""

from __future__ import annotations

import asyncio
import os

import uvicorn
from uvicorn.server import ServerState

from nncards.server.app import LARGE_BODY_READ_BYTES, ServerProtocol
from nncards.server.middleware import LARGE_BODY_BYTES, BodyLimit


def exchange(requests: list[bytes], on_body, behind=lambda app: app) -> tuple[list[bytes], list[bytes]]:
    """The bodies an app behind a ServerProtocol (whose on_body calls `on_body(protocol, piece)`
    first), and behind `behind`'s middleware, received of `requests` sent one after the other on
    one connection, and the answers."""

    class Recording(ServerProtocol):
        def on_body(self, body: bytes) -> None:
            on_body(self, body)
            super().on_body(body)

    bodies = []

    async def app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def talk() -> list[bytes]:
        config = uvicorn.Config(behind(app), lifespan="off", log_level="warning")
        config.load()
        state = ServerState()
        server = await asyncio.get_running_loop().create_server(
            lambda: Recording(config=config, server_state=state, app_state={}), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        try:
            for request in requests:
                writer.write(request)
                await writer.drain()
                answers.append(await reader.readuntil(b"ok"))
        finally:
            writer.close()
            server.close()
            await server.wait_closed()
        return answers

    answers = asyncio.run(talk())
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers)
    return bodies, answers


def test_a_large_body_is_read_in_large_pieces_then_small_requests_in_small():
    reads: list[tuple[int, int]] = []  # (piece length, the transport's read size) per piece
    large, small = os.urandom(LARGE_BODY_BYTES * 3), os.urandom(LARGE_BODY_BYTES // 2)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    requests = [head % len(body) + body for body in (large, small)]
    bodies, _ = exchange(requests, lambda protocol, piece: reads.append((len(piece), protocol.transport.max_size)))
    assert bodies == [large, small]
    large_reads = reads[:next(n for n in range(len(reads) + 1) if sum(size for size, _ in reads[:n]) == len(large))]
    assert {read_size for _, read_size in large_reads} == {LARGE_BODY_READ_BYTES}
    assert {read_size for _, read_size in reads[len(large_reads):]} == {256 * 1024}  # asyncio's own


def test_small_chunks_waiting_together_are_gathered_in_a_bytearray():
    """A piece waiting alone is handed on as it came; a chunked body's small chunks, which wait
    together, go into a bytearray (added to bytes, each would copy all before it: quadratic)."""
    body = os.urandom(200_000)
    request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    request += b"".join(b"1\r\n%s\r\n" % body[at:at + 1] for at in range(len(body))) + b"0\r\n\r\n"
    waiting = []  # (type, length) of what waited for the app when each piece came

    def on_body(protocol, piece):
        waiting.append((type(protocol.cycle.body), len(protocol.cycle.body)))

    bodies, _ = exchange([request], on_body)
    assert bodies == [body]
    assert {kind for kind, length in waiting if length > 1} == {bytearray}  # more than one piece waited


def test_a_large_body_asked_for_by_body_limit_is_received_past_httptools():
    """Behind BodyLimit, httptools parses only what came before BodyLimit asked for the body (the
    head's read and a read or two more): the rest goes straight into BodyLimit's buffer. The
    request after it, small, goes the old way."""
    large = b"[" + b"1.5," * (LARGE_BODY_BYTES * 2) + b"2]"
    small = b"[" + b"3," * 1000 + b"4]"
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    parsed = []
    bodies, _ = exchange([head % len(body) + body for body in (large, small)],
                         lambda protocol, piece: parsed.append(len(piece)),
                         lambda app: BodyLimit(app, max_bytes=2**30, max_depth=8))
    assert bodies == [large, small]
    assert sum(parsed) - len(small) < len(large) / 4
