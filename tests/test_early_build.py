"""A run request whose body opens with its graph has the graph validated and the model asked of the
run worker once the body has arrived, before the body is parsed (routers/runs.py `EarlyBuild`); a
request that opens otherwise, or is refused after its graph, answers as before, and a model built
for it is never another run's.

The application and its run worker are real (one spawned worker process, TensorFlow in it); what
the server sends its worker and when it parses a body are recorded in the server."""

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from graphs import edge, node
from nncards.contract import run_json
from nncards.execute.entry import execute
from nncards.server.app import create_app
from nncards.server.services import workers
from nncards.server.settings import Settings

ARRAY_LIMIT = 1_000


def dense_graph() -> dict:
    nodes = [node("x", "input", shape=[4]), node("dense", "layer_Dense", units=3), node("y", "output")]
    return {"nodes": nodes, "edges": [edge("x", "output", "dense", "input"), edge("dense", "output", "y", "input")]}


def fit_steps(samples: int = 32) -> list[dict]:
    x = np.random.default_rng(0).random((samples, 4)).round(3)
    return [{"kind": "fit", "inputs": {"x": x.tolist()}, "targets": {"y": (x[:, :3] * 2).tolist()}, "epochs": 2,
             "batch_size": 4, "shuffle": True}]


def body(*members: tuple[str, object]) -> bytes:
    """A request body with its members in the order given."""
    return json.dumps(dict(members)).encode()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("early"), workers=1, run_niceness=0,
                              max_array_elements=ARRAY_LIMIT))
    with TestClient(app, base_url="http://localhost") as client:
        app.state.client = client
        yield app


@pytest.fixture
def seen(app, monkeypatch) -> list:
    """What happens in the server, in order: ("sent", message) to a worker, ("parse",) of a body."""
    happened = []
    send, parse = workers.Worker.send, run_json.parse

    def recorded_send(worker, message):
        happened.append(("sent", message))
        return send(worker, message)

    def recorded_parse(*arguments):
        happened.append(("parse",))
        return parse(*arguments)

    monkeypatch.setattr(workers.Worker, "send", recorded_send)
    monkeypatch.setattr(run_json, "parse", recorded_parse)
    return happened


def post_run(app, content: bytes):
    return app.state.client.post("/api/v1/runs?wait=true", content=content,
                                 headers={"content-type": "application/json"})


def history(answer) -> dict:
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["status"] == "succeeded", result
    return result["steps"][0]["history"]


def in_process_history(seed: int) -> dict:
    result = execute({"graph": dense_graph(), "seed": seed, "steps": fit_steps()})
    assert result.status == "succeeded", result.error
    return result.steps[0].history


def asked(happened: list) -> list[tuple[int, bool, bool]]:
    """The models asked of the worker, each as (seed, whether asked before the body was parsed,
    whether compiled for the run's fit)."""
    return [(event[1].seed, ("parse",) not in happened[:index], event[1].compiled is not None)
            for index, event in enumerate(happened) if event[0] == "sent" and isinstance(event[1], workers.PrepareRun)]


def test_a_body_that_opens_with_its_graph_has_the_model_asked_for_before_it_is_parsed(app, seen):
    post_run(app, body(("graph", dense_graph()), ("seed", 7), ("steps", fit_steps())))  # a warm worker first
    seen.clear()
    answer = post_run(app, body(("graph", dense_graph()), ("seed", 7), ("steps", fit_steps())))
    # Built before the parse, compiled once the request is checked (the worker builds it once: test_run_worker.py)
    assert asked(seen) == [(7, True, False), (7, False, True)]
    assert seen[-1][0] == "sent" and not isinstance(seen[-1][1], workers.PrepareRun)  # then the run itself
    assert history(answer) == in_process_history(7)


def test_a_body_that_opens_otherwise_has_the_model_asked_for_once_checked(app, seen):
    answer = post_run(app, body(("steps", fit_steps()), ("graph", dense_graph()), ("seed", 7)))
    assert asked(seen) == [(7, False, True)]
    assert history(answer) == in_process_history(7)


def test_a_seed_after_the_arrays_is_guessed_and_a_wrong_guess_is_not_used(app, seen):
    answer = post_run(app, body(("graph", dense_graph()), ("steps", fit_steps()), ("seed", 9)))
    assert asked(seen) == [(0, True, False), (9, False, True)]  # the default first, then the run's own
    assert history(answer) == in_process_history(9)


def test_an_invalid_graph_is_never_built(app, seen):
    graph = dense_graph()
    graph["edges"] = graph["edges"][:1]  # the Output has no input
    answer = post_run(app, body(("graph", graph), ("seed", 7), ("steps", fit_steps())))
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "graph_invalid"
    assert asked(seen) == []


@pytest.mark.parametrize("refused, status, code", [
    (body(("graph", dense_graph()), ("seed", 7), ("steps", fit_steps(samples=ARRAY_LIMIT))), 413, "too_large"),
    (body(("graph", dense_graph()), ("seed", 7), ("steps", fit_steps()))[:-40], 400, "bad_request"),
], ids=["over the array limit", "not JSON"])
def test_a_body_refused_after_its_graph_answers_as_before_and_its_model_serves_no_other_run(
        app, seen, refused, status, code):
    # A graph validated before is asked for as the body arrives; a new one only once its validation
    # ends, which a refused body may not wait for: validated here so that the test stands alone.
    assert app.state.client.post("/api/v1/graphs/validate", json=dense_graph()).json()["valid"]
    seen.clear()
    answer = post_run(app, refused)
    assert answer.status_code == status and answer.json()["error"]["code"] == code, answer.text
    assert asked(seen) == [(7, True, False)]  # asked for as the body arrived, then not used
    seen.clear()
    # The same graph with another seed: the worker holds the model of seed 7, which this run must not take.
    answer = post_run(app, body(("steps", fit_steps()), ("graph", dense_graph()), ("seed", 8)))
    assert history(answer) == in_process_history(8)
