"""A graph that validates also runs: each card's smallest graph with one of its wired sockets
left unwired either gets a problem from validation or predicts (all of them in one model)."""

import nncards
from nncards.docs.smallest import smallest_run
from test_catalogue import CARDS, _prefixed


def without_socket(run: dict, port: str) -> dict:
    """The run with the edges into node `n`'s `port` removed (an Input may be left unused)."""
    graph = run["graph"]
    edges = [e for e in graph["edges"] if not (e["target"] == "n" and e["target_port"] == port)]
    return {**run, "graph": {**graph, "edges": edges}}


def variants():
    for card_id, card in CARDS.items():
        run = smallest_run(card, card.examples()[0])
        for port in dict.fromkeys(e["target_port"] for e in run["graph"]["edges"] if e["target"] == "n"):
            yield f"{card_id}-{port}.", without_socket(run, port)


def test_every_unwired_socket_is_refused_by_validation_or_runs():
    runnable = {}
    for prefix, run in variants():
        validation = nncards.validate(run["graph"])
        if validation["valid"]:
            runnable[prefix] = run
    if not runnable:
        return  # every variant was refused by validation, which is one of the two right answers
    parts = [_prefixed(run["graph"], prefix) for prefix, run in runnable.items()]
    graph = {"nodes": [n for p in parts for n in p["nodes"]], "edges": [e for p in parts for e in p["edges"]]}
    inputs = {prefix + node: value for prefix, run in runnable.items()
              for node, value in run["steps"][0]["inputs"].items()}
    result = nncards.run({"graph": graph, "steps": [{"kind": "predict", "inputs": inputs, "batch_size": 2}]})
    assert result["status"] == "succeeded", (sorted(runnable), result["error"])


def test_a_layer_card_without_its_input_feeding_an_output_is_refused():
    graph = {"nodes": [{"id": "x", "card": "input", "params": {"shape": [4]}},
                       {"id": "bn", "card": "layer_BatchNormalization"}, {"id": "y", "card": "output"}],
             "edges": [{"source": "bn", "source_port": "output", "target": "y", "target_port": "input"}]}
    validation = nncards.validate(graph)
    assert [(p["code"], p["node"], p["port"], p["edge"]) for p in validation["errors"]] == [
        ("missing_required_input", "bn", "input", 0)]


def test_an_unknown_card_gets_a_suggestion_and_no_follow_on_problem():
    graph = {"nodes": [{"id": "x", "card": "input", "params": {"shape": [4]}},
                       {"id": "bn", "card": "layer_BatchNormalisation"}, {"id": "y", "card": "output"}],
             "edges": [{"source": "x", "source_port": "output", "target": "bn", "target_port": "input"},
                       {"source": "bn", "source_port": "output", "target": "y", "target_port": "input"}]}
    errors = nncards.validate(graph)["errors"]
    assert [(p["code"], p["node"]) for p in errors] == [("unknown_card", "bn")]
    assert errors[0]["expected"][0] == "layer_BatchNormalization"
    assert "did you mean 'layer_BatchNormalization'" in errors[0]["message"]
