"""BodyLimit reads a request body as it arrives: the route gets the body and its skeleton whatever the
pieces; what is left after the last piece runs on a thread for a large body; the limits answer as before."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest

from nncards.contract import number_grid, run_json
from nncards.server import middleware
from nncards.server.middleware import RECEIVED_BODY, BodyLimit


def send_through(pieces: list[bytes], max_bytes: int = 2**30, max_depth: int = 64, declared: bool | int = True):
    """What the app behind BodyLimit got (the body replayed, and the scope's ReceivedBody), and the answer
    sent; `declared`: a Content-Length of the pieces' length (True), none (False), or this one."""
    messages = [{"type": "http.request", "body": piece, "more_body": n < len(pieces) - 1}
                for n, piece in enumerate(pieces)]
    length = sum(map(len, pieces)) if declared is True else declared
    headers = [(b"content-length", str(length).encode())] if declared is not False else []
    scope = {"type": "http", "method": "POST", "path": "/api/v1/runs", "headers": headers}
    got, sent = {}, []

    async def app(scope, receive, send):
        got["message"], got["received"] = await receive(), scope[RECEIVED_BODY]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(BodyLimit(app, max_bytes, max_depth)(scope, receive, send))
    return got, sent


@pytest.mark.parametrize("declared", [True, False])
def test_the_route_gets_the_body_and_its_skeleton(declared):
    body = json.dumps({"graph": {"nodes": [{"id": "a[1", "card": "input"}]}, "steps": [
        {"kind": "predict", "inputs": {"x": [[1.5, -2e3], [3, 4]], "y": {"dtype": "float32", "shape": [1],
                                                                       "base64": "AACAPw==" * 100}}}]}).encode()
    for size in (1, 7, 64, len(body)):
        got, sent = send_through([body[at:at + size] for at in range(0, len(body), size)], declared=declared)
        assert not sent and got["message"]["body"] == body and not got["message"]["more_body"]
        assert got["received"].body == body and got["received"].structure == run_json.skeleton(body)
    escaped = body.replace(b'"a[1"', b'"a\\"[1"')
    got, _ = send_through([escaped[:30], escaped[30:]], declared=declared)
    assert got["received"].body == escaped and got["received"].structure is None and got["received"].quotes is None


def test_a_large_body_read_into_its_declared_buffer_is_the_body_whatever_the_pieces():
    """Over LARGE_BODY_BYTES, the body is copied into a buffer of its declared length: any cutting into
    pieces gives the body and its skeleton; a length declared wrongly (only a test's receive can send
    other than it declares) gives what was sent."""
    generator = np.random.default_rng(11)
    x = generator.normal(size=(middleware.LARGE_BODY_BYTES // 150, 8)).tolist()
    body = json.dumps({"steps": [{"kind": "predict", "inputs": {"x": x, "b": {"base64": "QUJD" * 5000}}}]}).encode()
    assert len(body) > middleware.LARGE_BODY_BYTES
    for _ in range(4):
        cuts = sorted(generator.integers(0, len(body) + 1, size=generator.integers(1, 300)))
        pieces = [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)])]
        for declared in (True, len(body) + 12345, middleware.LARGE_BODY_BYTES + 1):
            got, sent = send_through(pieces, declared=declared)
            assert not sent and got["message"]["body"] == body and got["received"].body == body
            assert got["received"].structure == run_json.skeleton(body)
            assert got["received"].quotes == run_json._quote_positions(body)


def test_a_large_body_is_measured_off_the_event_loop(monkeypatch):
    threads = []

    def nesting_depth(body, structure=None):
        threads.append(threading.get_ident())
        return real(body, structure)

    real = middleware.nesting_depth
    monkeypatch.setattr(middleware, "nesting_depth", nesting_depth)
    loop_thread = threading.get_ident()  # asyncio.run runs its loop on this thread
    small = b"[" + b"1.5, " * 1000 + b"2]"
    large = b"[" + b"1.5, " * (middleware.LARGE_BODY_BYTES // 5) + b"2]"
    for body in (small, large):
        got, _ = send_through([body[at:at + 65536] for at in range(0, len(body), 65536)])
        assert got["received"].structure == run_json.skeleton(body)
    assert threads[0] == loop_thread and threads[1] != loop_thread


def test_the_limits_answer_as_before():
    deep = b"[" * 65 + b"]" * 65
    _, sent = send_through([deep[:40], deep[40:]])
    assert sent[0]["status"] == 422 and b"nests arrays and objects 65 levels deep" in sent[1]["body"]
    _, sent = send_through([deep[:40], deep[40:]], max_depth=65)
    assert not sent
    for declared in (True, False):
        _, sent = send_through([b"[" + b" " * 50, b" " * 50 + b"]"], max_bytes=100, declared=declared)
        assert sent[0]["status"] == 413 and b"too_large" in sent[1]["body"]


def test_guard_reads_the_first_of_each_header_as_starlette_does():
    scope = {"headers": [(b"host", b"localhost:8000"), (b"origin", b"http://a.example"), (b"host", b"evil.example"),
                         (b"x-other", b"1"), (b"authorization", b"Bearer \xe9")]}
    assert middleware.first_headers(scope, b"host", b"origin", b"authorization", b"cookie") == \
        ["localhost:8000", "http://a.example", "Bearer \xe9", None]


TELEMETRY_PROBE = """
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from nncards.server.app import create_app

unwatched = create_app()  # made before any provider: FastAPI's telemetry is off for it
spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)
watched = create_app()
for app, path in ((unwatched, "/api/v1/types"), (watched, "/api/v1/cards")):
    assert TestClient(app, base_url="http://localhost").get(path).status_code == 200
print(sorted(span.attributes.get("url.path") for span in spans.get_finished_spans()))
"""


def test_fastapi_telemetry_records_requests_only_when_a_provider_was_configured_first():
    """FastAPI would ask OpenTelemetry's providers on every request (a quarter of a catalogue
    answer); nncards asks once, when the application is made (in a process of its own: a global
    provider cannot be unset)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", TELEMETRY_PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['/api/v1/cards']"


@pytest.mark.parametrize("counter", ["nncards' reader", "numpy"])
def test_nesting_depth_is_the_deepest_running_count_of_brackets_outside_strings(monkeypatch, counter):
    """Against a plain count over the text with its strings emptied: random texts of brackets,
    braces, strings, escapes, numbers and separators, measured by nncards' number reader, and by
    NumPy (where the reader is not built) in chunks of 7 bytes and whole."""
    if counter == "numpy":
        monkeypatch.setattr(number_grid, "ready", lambda: None)
    else:
        assert number_grid.library() is not None
    def counted(text: bytes) -> int:
        deepest = depth = 0
        for byte in run_json.STRING.sub(b'""', text):
            depth += (byte in b"[{") - (byte in b"]}")
            deepest = max(deepest, depth)
        return deepest

    generator = np.random.default_rng(13)
    alphabet = np.frombuffer(b'[[[]]{{}}",:, 0123456789eE.-\\ab\n', np.uint8)
    texts = [generator.choice(alphabet, generator.integers(0, 80)).tobytes() for _ in range(3000)]
    texts += [json.dumps({"x": generator.normal(size=(20, 3, 2)).tolist(), "s": "[{"}).encode()]
    # Longer texts, where the reader counts 32 bytes at a time: nesting more than 32 deep within those
    # bytes, closings outnumbering openings (a depth below zero), and lengths either side of 32.
    for skewed in (b"[[[[[[{{]},", b"]]]]]]}}[{,", b"[],,,,,,,,,,,,,,"):
        texts += [generator.choice(np.frombuffer(skewed, np.uint8), size).tobytes()
                  for size in (31, 32, 33, 63, 64, 65, 200, 4099) for _ in range(5)]
    for chunk_bytes in (7, middleware.DEPTH_CHUNK_BYTES):
        monkeypatch.setattr(middleware, "DEPTH_CHUNK_BYTES", chunk_bytes)
        for text in texts:
            assert middleware.nesting_depth(text) == counted(text), text
            if b"\\" not in text:
                assert middleware.nesting_depth(text, run_json.skeleton(text)) == counted(text), text
