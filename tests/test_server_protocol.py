"""ServerProtocol in process, on a real socket: a large body is read in large pieces and arrives
whole, the next request on the connection is read in asyncio's small pieces again."""

from __future__ import annotations

import asyncio
import os

import uvicorn
from uvicorn.server import ServerState

from nncards.server.app import LARGE_BODY_READ_BYTES, ServerProtocol
from nncards.server.middleware import LARGE_BODY_BYTES


def test_a_large_body_is_read_in_large_pieces_then_small_requests_in_small():
    reads: list[tuple[int, int]] = []  # (piece length, the transport's read size) per piece

    class Recording(ServerProtocol):
        def on_body(self, body: bytes) -> None:
            reads.append((len(body), self.transport.max_size))
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

    large, small = os.urandom(LARGE_BODY_BYTES * 3), os.urandom(LARGE_BODY_BYTES // 2)

    async def exchange() -> list[bytes]:
        config = uvicorn.Config(app, lifespan="off", log_level="warning")
        config.load()
        state = ServerState()
        server = await asyncio.get_running_loop().create_server(
            lambda: Recording(config=config, server_state=state, app_state={}), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        try:
            for body in (large, small):
                writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
                answers.append(await reader.readuntil(b"ok"))
        finally:
            writer.close()
            server.close()
            await server.wait_closed()
        return answers

    answers = asyncio.run(exchange())
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers)
    assert bodies == [large, small]
    large_reads = reads[:next(n for n in range(len(reads) + 1) if sum(size for size, _ in reads[:n]) == len(large))]
    assert {read_size for _, read_size in large_reads} == {LARGE_BODY_READ_BYTES}
    assert {read_size for _, read_size in reads[len(large_reads):]} == {256 * 1024}  # asyncio's own
