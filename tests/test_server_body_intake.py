"""A large request body received straight into its buffer (ServerProtocol's BodyIntake), against a
real `nncards serve`: the run gets its numbers whole and right; the connection goes on after the
body (keep-alive, a pipelined request, Expect: 100-continue) or drops what follows a closing
request; a client that goes away mid-body, or sends less than it declared and stops, leaves the
server answering others; a body declared too large is refused before it is sent; a chunked body
still goes the old way."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import numpy as np
import pytest
from conftest import LiveServer

from graphs import edge, node

from nncards.server.middleware import LARGE_BODY_BYTES, BodyBuffers

BODY_LIMIT = 8 * 2**20
COLUMNS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("intake"), "--max-body-bytes", str(BODY_LIMIT),
                        "--workers", "1").start()
    yield server
    server.stop()


def identity_run(rows: int, seed: int) -> tuple[bytes, np.ndarray]:
    """A run request whose output is its input, as nested lists of float32 numbers (which JSON
    carries exactly), larger than LARGE_BODY_BYTES; and that input."""
    x = np.random.default_rng(seed).normal(size=(rows, COLUMNS)).astype(np.float32)
    graph = {"nodes": [node("x", "input", shape=[COLUMNS]), node("same", "layer_Identity"), node("y", "output")],
             "edges": [edge("x", "output", "same", "input"), edge("same", "output", "y", "input")]}
    body = json.dumps({"graph": graph, "steps": [{"kind": "call", "inputs": {"x": x.tolist()}}]}).encode()
    assert LARGE_BODY_BYTES < len(body) < BODY_LIMIT
    return body, x


def post(body: bytes, *headers: str, length: int | None = None) -> bytes:
    lines = ["POST /api/v1/runs?wait=true HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {len(body) if length is None else length}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


HEALTH = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def read_answer(connection: socket.socket, pending: bytearray) -> tuple[int, dict, bytes]:
    """The next answer on the connection (status, headers, body, chunked or not); `pending` holds
    what was read past it."""

    def upto(mark: bytes) -> bytes:
        while mark not in pending:
            chunk = connection.recv(65536)
            assert chunk, f"closed inside an answer; read {bytes(pending[:300])!r}"
            pending.extend(chunk)
        found = pending.index(mark)
        text = bytes(pending[:found])
        del pending[:found + len(mark)]
        return text

    def exactly(length: int) -> bytes:
        while len(pending) < length:
            chunk = connection.recv(65536)
            assert chunk, "closed inside an answer"
            pending.extend(chunk)
        text = bytes(pending[:length])
        del pending[:length]
        return text

    lines = upto(b"\r\n\r\n").decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int(upto(b"\r\n"), 16):
            body += exactly(size)
            upto(b"\r\n")
        upto(b"\r\n")
    else:
        body = exactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), headers, body


def assert_identity(answer: tuple[int, dict, bytes], x: np.ndarray) -> None:
    status, _, body = answer
    result = json.loads(body)
    assert status == 200 and result["status"] == "succeeded", result
    np.testing.assert_array_equal(np.array(result["steps"][0]["outputs"]["y"], np.float32), x)


def connect(server) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", server.port))
    connection.settimeout(120)  # the first run starts the run worker
    return connection


def test_a_large_body_arrives_whole_and_the_connection_goes_on(server):
    """A request pipelined right behind a large body is answered after it; the next large body on
    the same connection, asked for with Expect: 100-continue, arrives whole too."""
    first, x = identity_run(20_000, seed=1)
    second, z = identity_run(30_000, seed=2)
    with connect(server) as connection:
        pending = bytearray()
        connection.sendall(post(first) + first + HEALTH)
        assert_identity(read_answer(connection, pending), x)
        status, _, health = read_answer(connection, pending)
        assert status == 200 and json.loads(health)["status"] == "ok"
        connection.sendall(post(second, "Expect: 100-continue"))
        while len(pending) < 25:
            pending += connection.recv(65536)
        assert pending.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        del pending[:25]
        connection.sendall(second)
        assert_identity(read_answer(connection, pending), z)
        assert not pending


def test_what_follows_the_body_of_a_closing_request_is_dropped(server):
    """After a request with Connection: close, further bytes (here not even HTTP) are dropped, as
    httptools drops them: the request is answered and the connection closed, without a 400."""
    body, x = identity_run(20_000, seed=3)
    with connect(server) as connection:
        connection.sendall(post(body, "Connection: close") + body + b"NOT HTTP\r\n\r\n" + HEALTH)
        pending = bytearray()
        answer = read_answer(connection, pending)
        assert answer[1]["connection"] == "close"
        assert_identity(answer, x)
        while chunk := connection.recv(65536):
            pending += chunk
        assert not pending


def test_clients_that_stop_mid_body_leave_the_server_answering(server):
    """A client that closes halfway through its body, and one that sends less than it declared
    and then shuts its side, get no answer; the server answers the next large body right and
    logs no error."""
    body, x = identity_run(40_000, seed=4)
    with connect(server) as gone:
        gone.sendall(post(body) + body[:len(body) // 2])
        time.sleep(0.5)  # the server is receiving the body
    with connect(server) as short:
        short.sendall(post(body) + body[:-100])
        time.sleep(0.5)
        short.shutdown(socket.SHUT_WR)
        short.settimeout(10)
        assert short.recv(65536) == b""  # closed by the server, nothing answered
    with connect(server) as connection:
        connection.sendall(post(body) + body)
        assert_identity(read_answer(connection, bytearray()), x)
    log = server.log()
    assert "Traceback" not in log and "Fatal error" not in log, log


def test_a_body_declared_too_large_is_refused_before_it_is_sent(server):
    with connect(server) as connection:
        connection.sendall(post(b"", length=BODY_LIMIT + 1))
        status, headers, body = read_answer(connection, bytearray())
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "too_large"


def test_a_large_chunked_body_arrives_whole(server):
    body, x = identity_run(20_000, seed=5)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[at:at + 65536]), body[at:at + 65536])
                      for at in range(0, len(body), 65536))
    head = post(body).replace(b"Content-Length: %d" % len(body), b"Transfer-Encoding: chunked")
    with connect(server) as connection:
        connection.sendall(head + chunks + b"0\r\n\r\n")
        assert_identity(read_answer(connection, bytearray()), x)


def test_bodies_of_the_same_length_in_turn_each_arrive_as_sent(server):
    """The second body lands in the buffer the first one left (the same length): it is read as sent,
    nothing of the first one shows through."""
    first, x = identity_run(20_000, seed=3)
    second, z = identity_run(20_000, seed=4)
    length = max(len(first), len(second))
    first, second = first.ljust(length), second.ljust(length)  # JSON allows white space after the document
    for body, expected in ((first, x), (second, z), (first, x)):
        with connect(server) as connection:
            connection.sendall(post(body) + body)
            assert_identity(read_answer(connection, bytearray()), expected)


def test_a_kept_buffer_is_taken_again_only_once_free_and_let_go_after_its_time():
    async def scenario():
        buffers = BodyBuffers(kept=2, seconds=0.2)
        first = buffers.take(3 * 2**20)
        first_address = id(first)
        view = memoryview(first)  # a body still being read
        second = buffers.take(3 * 2**20)
        assert second is not first and buffers.kept_bytes == 6 * 2**20
        del first, view
        assert id(buffers.take(3 * 2**20)) == first_address  # free now: taken again, not a new one
        assert buffers.take(2**21) is not second and buffers.kept_bytes == 3 * 2**20 + 2**21  # at most two kept
        await asyncio.sleep(0.4)
        assert buffers.kept_bytes == 0  # an idle server gives the memory back

    asyncio.run(scenario())
