"""The server survives its users (issue 12), each finding reproduced against a real `nncards serve`.

Most tests share one guarded server (a token made by `--token auto`, one worker, a short queue,
small result and retention limits); those that need other settings or kill the server start
their own. Every run-ending test checks that the run ends, that the next run succeeds and that
no process is left behind.
"""

import contextlib
import json
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import LiveServer, free_port, wait_for_epoch, wait_until
from test_server import assert_envelope, fit_run, read_events

from graphs import bn_graph, edge, node

import nncards
from nncards.build.validation import NodeMemo
from nncards.server.middleware import nesting_depth

QUEUE = 2
KEEP_RUNS = 4
RESULT_ELEMENTS = 100_000
CALL = {"graph": bn_graph([2]), "steps": [{"kind": "call", "inputs": {"x": [[1.0, 2.0], [3.0, 5.0]]}}]}


def dense_call(units: int, samples: int = 1) -> dict:
    graph = {"nodes": [node("x", "input", shape=[1]), node("d", "layer_Dense", units=units), node("y", "output")],
             "edges": [edge("x", "output", "d", "input"), edge("d", "output", "y", "input")]}
    return {"graph": graph, "steps": [{"kind": "call", "inputs": {"x": [[1.0]] * samples}}]}


def descendants(pid: int) -> set[int]:
    """Every living process under `pid`, whatever its depth."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, frontier = set(), [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.add(child)
            frontier.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.add(pid)
    return living


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("guarded"), "--token", "auto", "--workers", "1",
                        "--max-queued-runs", str(QUEUE), "--keep-runs", str(KEEP_RUNS),
                        "--max-result-elements", str(RESULT_ELEMENTS), "--idle-connection-seconds", "1").start()
    server.token = re.search(r"\?token=(\S+)", server.log()).group(1)
    server.client.headers["Authorization"] = f"Bearer {server.token}"
    yield server
    family = descendants(server.process.pid)
    server.stop()
    wait_until(lambda: not alive(family), 10, "the server's processes end with it")


@pytest.fixture
def api(guarded) -> httpx.Client:
    return guarded.client


# -- 2. local means local -------------------------------------------------------------------------


def test_token_guards_every_route_but_health(guarded, api):
    url = re.search(r"(http://\S+\?token=\S+)", guarded.log()).group(1)
    assert url.startswith("http://127.0.0.1:")
    anonymous = httpx.Client(base_url=guarded.api)
    for method, path in (("GET", "/cards"), ("GET", "/types"), ("POST", "/runs"), ("GET", "/runs"),
                         ("POST", "/graphs/validate"), ("GET", "/runs/0123"), ("DELETE", "/runs/0123")):
        answer = anonymous.request(method, path, json={})
        assert_envelope(answer, 401, "unauthorized")
        assert answer.headers["www-authenticate"] == "Bearer"
    assert_envelope(anonymous.get("/cards", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/cards", params={"token": guarded.token}).status_code == 200  # as an EventSource can
    page = httpx.get(guarded.url + "/")  # the editor loads without it, and reads the token from its URL
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert api.get("/cards").status_code == 200
    for answer in (page, api.get("/cards"), anonymous.get("/cards")):
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_host_allow_list_and_foreign_origin(guarded, api):
    for host in ("rebind.example", f"rebind.example:{guarded.port}", "127.0.0.2.nip.example"):
        assert_envelope(api.get("/runs", headers={"Host": host}), 403, "forbidden")
    assert_envelope(httpx.get(guarded.url + "/", headers={"Host": "rebind.example"}), 403, "forbidden")
    for host in (f"localhost:{guarded.port}", f"127.0.0.1:{guarded.port}", "localhost"):
        assert api.get("/runs", headers={"Host": host}).status_code == 200
    foreign = {"Origin": "http://attacker.example"}
    assert_envelope(api.post("/runs", json=CALL, headers=foreign), 403, "forbidden")
    assert_envelope(api.delete("/runs/0123", headers={"Origin": "null"}), 403, "forbidden")
    same = {"Origin": guarded.url}
    assert api.post("/graphs/validate", json=bn_graph([2]), headers=same).status_code == 200


def test_docs_page_works_offline(guarded):
    page = httpx.get(guarded.url + "/docs")
    assert page.status_code == 200
    assert re.findall(r"""(?:src|href)=["'](https?:)?//""", page.text) == []  # nothing from another host
    for asset in re.findall(r"""(?:src|href)=["'](/docs-assets/[^"']+)""", page.text):
        assert httpx.get(guarded.url + asset).status_code == 200
    assert httpx.get(guarded.url + "/redoc").status_code == 404


def test_startup_refusals(guarded, tmp_path):
    def serve(*flags, data_dir=tmp_path / "data"):
        return subprocess.run([sys.executable, "-m", "nncards.cli", "serve", "--port", str(free_port()),
                               "--data-dir", str(data_dir), *flags], capture_output=True, text=True, timeout=60)

    for flags, says in ((("--host", "0.0.0.0"), "without a token"),
                        (("--cors-origins", "*", "--token", "secret"), "--cors-origins '*' with a token"),
                        ((), "Another nncards server")):
        done = serve(*flags, data_dir=guarded.data_dir if not flags else tmp_path / "data")
        assert done.returncode != 0 and says in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "runs.sqlite3").write_bytes(b"this is not a database" * 100)
    done = serve(data_dir=corrupt)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert str(corrupt / "runs.sqlite3") in done.stderr and "move it away" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_idle_connections_are_closed(guarded):
    sockets = [socket.create_connection(("127.0.0.1", guarded.port)) for _ in range(50)]
    try:
        time.sleep(2.0)
        for connection in sockets:
            connection.settimeout(5)
            assert connection.recv(1) == b""  # closed by the server
    finally:
        for connection in sockets:
            connection.close()
    assert guarded.client.get("/health").status_code == 200



def raw_exchange(port: int, *pieces: bytes, pause: float = 0.0) -> bytes:
    """What the server answers on one connection to `pieces`, sent in turn `pause` seconds apart,
    read until it closes the connection (the guarded server's idle timeout is 1 s). Sending stops
    when the server has closed the connection; a reset ends the answer."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(10)
        try:
            for piece in pieces:
                connection.sendall(piece)
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


HEALTH = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def protocol_refusal(answer: bytes, status: int) -> str:
    """The message of an answer the HTTP protocol gave before any route saw the request: the error
    envelope (`bad_request`), with the headers every answer carries, then the connection closed."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), answer
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff" and int(headers["content-length"]) == len(body)
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request", error
    return error["message"]


def test_requests_that_are_not_http_get_the_error_envelope(guarded):
    for garbage in (b"FOO\x00 / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):  # the last: a TLS hello
        assert protocol_refusal(raw_exchange(guarded.port, garbage), 400) == "The request is not valid HTTP/1.1."


def test_request_heads_are_limited(guarded):
    """A head still incomplete past 16 KiB is refused (httptools alone would buffer a header of
    any length); a long head that arrives whole is answered."""
    endless = raw_exchange(guarded.port, HEALTH + b"X-Endless: ", *[b"a" * 4096] * 8, pause=0.05)
    assert "longer than 16384 bytes" in protocol_refusal(endless, 400)
    answer = raw_exchange(guarded.port, HEALTH + b"X-Long: " + b"a" * 12_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in answer
    chunked = (f"POST /api/v1/graphs/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {guarded.token}\r\n"
               "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n").encode()
    trailers = raw_exchange(guarded.port, chunked, *[b"X-Trailer: " + b"a" * 4096 + b"\r\n"] * 8, pause=0.05)
    assert trailers.startswith(b"HTTP/1.1 400 ")
    assert guarded.client.get("/health").status_code == 200


def test_request_heads_have_a_deadline(guarded):
    """A head trickling in a byte every 0.3 s (each read used to restart uvicorn's idle timer, so it
    held its connection forever) is answered 408 and closed about the idle time (1 s) after it
    began; other connections are answered meanwhile, and a body arriving slowly after a complete
    head is not under the deadline."""
    with socket.create_connection(("127.0.0.1", guarded.port)) as slow:
        slow.sendall(HEALTH)
        began = time.monotonic()
        assert guarded.client.get("/health").status_code == 200
        answer = b""
        while time.monotonic() - began < 8:
            try:
                slow.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([slow], [], [], 0.3)[0]:  # answered or closed
                chunk = slow.recv(65536)
                answer += chunk
                if not chunk:
                    break
        took = time.monotonic() - began
        assert protocol_refusal(answer, 408) == "The request head was not complete within 1 s."
        assert took < 3, took
    blank_lines = raw_exchange(guarded.port, *[b"\r\n"] * 8, pause=0.3)  # llhttp skips them, beginning no head
    assert blank_lines.startswith(b"HTTP/1.1 408 ")
    graph = json.dumps(bn_graph([2])).encode()
    head = (f"POST /api/v1/graphs/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {guarded.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(graph)}\r\n\r\n").encode()
    pieces = [graph[start:start + len(graph) // 4 + 1] for start in range(0, len(graph), len(graph) // 4 + 1)]
    uploaded = raw_exchange(guarded.port, head, *pieces, pause=0.6)  # the body takes 2.4 s
    assert uploaded.startswith(b"HTTP/1.1 200 ") and b'"valid":true' in uploaded


def test_a_refused_client_still_reads_its_answer_while_it_keeps_sending(guarded):
    """The server shuts its side after a refusal and drops what still comes: closing with the
    client's bytes unread resets the connection, and a reset can throw the answer away before the
    client reads it. A head streaming on past 16 KiB, and one trickling on past its deadline, each
    read their refusal."""
    def keep_sending(piece: bytes, every: float) -> bytes:
        with socket.create_connection(("127.0.0.1", guarded.port)) as eager:
            eager.sendall(HEALTH + b"X-Endless: ")
            answer, began = b"", time.monotonic()
            while time.monotonic() - began < 5:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    eager.sendall(piece)
                if select.select([eager], [], [], every)[0]:
                    chunk = eager.recv(65536)  # a reset here is the defect
                    answer += chunk
                    if not chunk:
                        break
            return answer

    for _ in range(3):
        assert "longer than 16384 bytes" in protocol_refusal(keep_sending(b"a" * 8192, 0.001), 400)
        assert protocol_refusal(keep_sending(b"a", 0.02), 408) == "The request head was not complete within 1 s."


def test_expect_continue_pipelining_and_keep_alive(guarded):
    graph = json.dumps(bn_graph([2])).encode()
    head = (f"POST /api/v1/graphs/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {guarded.token}\r\n"
            f"Content-Type: application/json\r\nExpect: 100-continue\r\n").encode()
    with socket.create_connection(("127.0.0.1", guarded.port)) as connection:
        connection.settimeout(30)
        connection.sendall(head + b"Content-Length: %d\r\n\r\n" % len(graph))
        assert connection.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"  # asked for once the route reads the body
        connection.sendall(graph)
        answer = b""
        while b'"valid":true' not in answer:
            answer += connection.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        connection.sendall(HEALTH + b"\r\n")  # the same connection serves the next request
        assert connection.recv(65536).startswith(b"HTTP/1.1 200 ")
    # A body declared too large is refused before the client is asked to send it.
    refused = raw_exchange(guarded.port, head + b"Content-Length: 999999999999\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in refused and b'"too_large"' in refused
    pipelined = raw_exchange(guarded.port, (HEALTH + b"\r\n") * 3)
    assert pipelined.count(b"HTTP/1.1 200 ") == 3 and pipelined.count(b'"status":"ok"') == 3

# -- 4, 5, 7, 8: bounded queue, memory and disk ---------------------------------------------------


def test_queue_is_bounded_and_health_reports_it(api):
    running = api.post("/runs", json=fit_run(epochs=100_000, batch_size=1)).json()["run_id"]
    wait_for_epoch(api, running)
    queued = [api.post("/runs", json=CALL).json()["run_id"] for _ in range(QUEUE)]
    refused = api.post("/runs", json=CALL)
    assert_envelope(refused, 429, "queue_full")
    assert int(refused.headers["retry-after"]) > 0
    health = api.get("/health").json()
    assert (health["status"], health["queued"], health["running"]) == ("ok", QUEUE, 1)
    assert health["oldest_run_seconds"] > 0
    for run_id in (*queued, running):
        assert api.delete(f"/runs/{run_id}").json()["status"] == "cancelled"
    assert api.post("/runs", params={"wait": "true"}, json=CALL).json()["status"] == "succeeded"
    assert api.get("/health").json()["queued"] == 0


def test_result_limits(guarded, api):
    # outputs known from the shapes before the run: refused at once
    error = assert_envelope(api.post("/runs", json=dense_call(60_000, samples=2)), 413, "too_large")
    assert error["errors"][0]["received"] == 120_000
    # weights are counted on the result: the run fails with its own code, and the worker goes on
    workers = descendants(guarded.process.pid)
    failed = api.post("/runs", params={"wait": "true"}, json=dense_call(60_000)).json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "result_too_large"
    assert not list((guarded.data_dir / "runs" / failed["run_id"]).glob("*.npy"))  # no result arrays kept
    assert api.post("/runs", params={"wait": "true"}, json=CALL).json()["status"] == "succeeded"
    assert descendants(guarded.process.pid) == workers


def test_results_are_files_streamed_and_removed(guarded, api):
    results = [api.post("/runs", params={"wait": "true"}, json=CALL).json() for _ in range(KEEP_RUNS + 2)]
    folders = [guarded.data_dir / "runs" / r["run_id"] for r in results]
    assert all(r["status"] == "succeeded" for r in results)
    assert sorted(p.name for p in folders[-1].glob("*.npy")) == [f"{n}.npy" for n in range(5)]
    row = sqlite3.connect(guarded.data_dir / "runs.sqlite3").execute(
        "SELECT result FROM runs WHERE run_id = ?", (results[-1]["run_id"],)).fetchone()[0]
    assert "base64" not in row and '"file":"0.npy"' in row  # the database keeps the record only
    x = np.array(CALL["steps"][0]["inputs"]["x"])
    np.testing.assert_allclose(results[-1]["steps"][0]["outputs"]["y"], x / np.sqrt(1 + 1e-3), rtol=1e-5)  # inference
    # retention: the oldest finished runs went, with their files. It runs once the newest run's end
    # is stored, which may be just after its answer, and takes a run's row before its folder (a reader
    # never meets a row without its files): each is waited for, briefly.
    for gone, folder in zip(results[:2], folders[:2]):
        wait_until(lambda: api.get(f"/runs/{gone['run_id']}").status_code == 404 and not folder.exists(), 10,
                   f"run {gone['run_id']} and its folder removed")
        assert_envelope(api.get(f"/runs/{gone['run_id']}"), 404, "not_found")
    assert api.get("/runs").json()["total"] <= KEEP_RUNS
    newest = results[-1]["run_id"]
    assert api.get(f"/runs/{newest}").json() == results[-1]
    assert api.delete(f"/runs/{newest}").status_code == 204
    assert not folders[-1].exists()
    assert_envelope(api.get(f"/runs/{newest}"), 404, "not_found")


def test_deep_nesting_is_request_invalid_in_one_log_line(guarded, api):
    before = guarded.log()
    deep_array = b'{"nodes": [], "edges": [], "x": ' + b"[" * 481 + b"]" * 481 + b"}"
    assert_envelope(api.post("/graphs/validate", content=deep_array, headers={"content-type": "application/json"}),
                    422, "request_invalid")
    graph = bn_graph([2])
    graph["nodes"][1]["params"]["momentum"] = json.loads("[" * 255 + "]" * 255)
    for route in ("/graphs/validate", "/runs"):
        body = graph if route == "/graphs/validate" else {"graph": graph}
        assert_envelope(api.post(route, json=body), 422, "request_invalid")
    added = guarded.log()[len(before):]
    assert "Traceback" not in added
    assert len(re.findall(r"nested \d+ levels deep", added)) == 3
    assert api.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("body, depth", [
    (b"", 0), (b"[]", 1), (b'{"a": [[1.5e3, -2]]}', 3), (b'"[[["', 0), (b'["]]", [["["]]]', 3),
    (b'["\\"[[", [1]]', 2), (b'["\\\\", [[1]]]', 3), (b'["\\u005b1", [[[ 2 ]]]]', 4), (b"]]][[", 0),
    (b'"unterminated [[', 2)])
def test_nesting_depth_counts_brackets_outside_strings(body, depth):
    assert nesting_depth(body) == depth


def test_nan_infinity_and_null_are_validated_apart(api):
    answers = []
    for token in ("NaN", "Infinity", "-Infinity", "null", "0.5"):
        text = json.dumps(bn_graph([2], {"momentum": "TOKEN"})).replace('"TOKEN"', token)
        answers.append(api.post("/graphs/validate", content=text, headers={"content-type": "application/json"}).json())
    received = [[e.get("received") for e in answer["errors"]] for answer in answers]
    assert received[:3] == [["NaN"], ["Infinity"], ["-Infinity"]]
    assert answers[3] != answers[0] and answers[4]["valid"] is True


# -- 1. a run always ends, storage failing included -----------------------------------------------

LOCK_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
"""


def test_a_run_ends_when_its_result_cannot_be_stored(guarded, api):
    run_id = api.post("/runs", json=fit_run(epochs=100_000, batch_size=1)).json()["run_id"]
    wait_for_epoch(api, run_id)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(guarded.data_dir / "runs.sqlite3")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        api.delete(f"/runs/{run_id}")  # the run stops at its next batch; its end cannot be written
        result = wait_until(lambda: (r := api.get(f"/runs/{run_id}").json())["status"] == "failed" and r, 30,
                            "the run ends failed")
        assert result["status"] == "failed" and result["error"]["code"] == "storage_failed"
        started = time.perf_counter()
        health = api.get("/health")
        assert time.perf_counter() - started < 1.0  # the event loop does not wait for the database
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        assert "database" in health.json()["problem"]
    finally:
        holder.communicate("release\n", timeout=10)
    wait_until(lambda: api.get("/health").status_code == 200, 30, "health recovers")
    assert api.post("/runs", params={"wait": "true"}, json=CALL).json()["status"] == "succeeded"
    assert api.get(f"/runs/{run_id}").json()["error"]["code"] == "storage_failed"  # written once it could be


# -- 3. processes die with their parent -----------------------------------------------------------

DISTRIBUTED_FIT = {**fit_run(epochs=100_000, batch_size=2), "distribution": {"strategy": "mirrored", "devices": 2}}


def distributed_children(server) -> set[int]:
    found = set()
    for pid in descendants(server.process.pid):
        try:
            if b"nncards.execute.distributed" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return alive(found)


def test_distributed_children_end_with_their_run_and_everything_with_the_server(tmp_path):
    server = LiveServer(tmp_path, "--workers", "1", "--max-run-seconds", "15").start()
    try:
        api = server.client
        assert api.post("/graphs/validate", json=bn_graph([2])).status_code == 200  # the validation worker
        timed = api.post("/runs", json=DISTRIBUTED_FIT).json()["run_id"]
        children = wait_until(lambda: distributed_children(server), 180, "the distributed child starts")
        result = wait_until(lambda: (r := api.get(f"/runs/{timed}").json())["status"] == "failed" and r, 60,
                            "the run times out")
        assert result["error"]["code"] == "run_timeout", result["error"]
        wait_until(lambda: not alive(children), 10, "the distributed child ends with its run")
        assert api.post("/runs", params={"wait": "true"}, json=CALL).json()["status"] == "succeeded"

        api.post("/runs", json=DISTRIBUTED_FIT)
        wait_until(lambda: distributed_children(server), 180, "the distributed child starts")
        family = alive(descendants(server.process.pid))
        assert len(family) >= 4  # run worker, validation worker, resource tracker, distributed child
        server.stop(clean=False)  # kill -9: no shutdown code runs
        wait_until(lambda: not alive(family), 15, "every process of the server ends")
    finally:
        server.stop()


# -- disk full: a real small filesystem ------------------------------------------------------------


@pytest.fixture
def small_filesystem(tmp_path):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_run_ends_when_the_disk_is_full(small_filesystem):
    server = LiveServer(small_filesystem / "data", "--workers", "1").start()
    try:
        api = server.client
        full = api.post("/runs", params={"wait": "true"}, json=dense_call(1_000_000)).json()  # 12 MB of arrays
        assert full["status"] == "failed" and full["error"]["code"] == "storage_failed"
        assert "could not be stored" in full["error"]["message"]
        assert not list((small_filesystem / "data" / "runs" / full["run_id"]).glob("*.npy"))
        assert api.post("/runs", params={"wait": "true"}, json=CALL).json()["status"] == "succeeded"
        assert api.get("/health").json()["status"] == "ok"
        family = descendants(server.process.pid)
    finally:
        server.stop()
    wait_until(lambda: not alive(family), 10, "the server's processes end with it")


# -- 6. linear-time structure checks; the memo bounded in bytes -----------------------------------


def test_a_2000_node_cycle_validates_in_well_under_a_second():
    nncards.validate(bn_graph([2]))  # Keras imported and warm
    ring = [node("x", "input", shape=[4]), node("y", "output")]
    ring += [node(f"d{i}", "layer_Dense", units=4) for i in range(1998)]
    edges = [edge(f"d{i}", "output", f"d{(i + 1) % 1998}", "input") for i in range(1998)]
    edges.append(edge("d0", "output", "y", "input"))
    started = time.process_time()  # this process's CPU: the machine's other load does not count
    result = nncards.validate({"nodes": ring, "edges": edges})
    seconds = time.process_time() - started
    assert not result["valid"] and {e["code"] for e in result["errors"]} >= {"cycle"}
    assert seconds < 1.0, seconds  # was 16.7 s: cubic ordering, and every problem holding the whole cycle


def test_node_memo_is_bounded_in_bytes():
    memo = NodeMemo(size=1000, max_bytes=50_000)
    card = type("Card", (), {"outputs": []})
    for i in range(100):
        memo.store(("card", f"n{i}", "x" * 10_000, (), 1), card, None, [])
    assert memo.bytes <= 50_000 and len(memo._entries) == 4  # the oldest went first
    assert memo.recall(("card", "n99", "x" * 10_000, (), 1)) == (None, [])
    memo.store(("card", "huge", "x" * 100_000, (), 1), card, None, [])  # larger than the bound: not kept
    assert memo.recall(("card", "huge", "x" * 100_000, (), 1)) == (None, None)


def test_retention_removes_the_oldest_finished_runs_first(tmp_path):
    from nncards.server.services.store import RunStore

    store = RunStore(tmp_path)
    try:
        for number in range(6):
            store.create(f"run{number}", {})
            if number != 4:  # run4 is still queued: never removed
                folder = store.folder(f"run{number}")
                folder.mkdir(parents=True)
                (folder / "0.npy").write_bytes(b"x" * 1000)
                store.finish(f"run{number}", {"status": "succeeded"})
        assert store.expired(keep_runs=3, keep_bytes=10**9) == ["run1", "run0"]  # run5, run3, run2 kept
        assert store.expired(keep_runs=100, keep_bytes=2500) == ["run2", "run1", "run0"]  # ~1 kB each
        assert store.expired(keep_runs=100, keep_bytes=0) == ["run3", "run2", "run1", "run0"]  # the newest stays
        store.remove("run0")
        assert store.get("run0") is None and not store.folder("run0").exists()
    finally:
        store.close()
