"""The per-node memo of validation: the same answers as building every node, and a hit builds nothing."""

from graphs import edge, node
from test_catalogue import CARDS, EXAMPLES, _prefixed

from nncards.build.validation import Validator
from nncards.docs.smallest import smallest_graph


def chain(first_units: int, names: dict | None = None) -> dict:
    """Input → Dense(first_units) → BatchNormalization → Activation → Dense(8) → BatchNormalization → Output."""
    names = names or {}
    layers = [("d0", "layer_Dense", {"units": first_units}), ("bn0", "layer_BatchNormalization", {}),
              ("a0", "layer_Activation", {"activation": "relu"}), ("d1", "layer_Dense", {"units": 8}),
              ("bn1", "layer_BatchNormalization", {})]
    nodes = [node("x", "input", shape=[16]),
             *(node(i, card, **params, **({"name": names[i]} if i in names else {})) for i, card, params in layers),
             node("y", "output")]
    ids = [n["id"] for n in nodes]
    return {"nodes": nodes, "edges": [edge(a, "output", b, "input") for a, b in zip(ids, ids[1:])]}


def cold_and_warm(graph: dict) -> tuple[Validator, dict, dict, int]:
    """The graph validated by a new validator, then again; the builds the second time."""
    validator = Validator()
    cold = validator.validate(graph)
    builds = validator.memo.misses
    warm = validator.validate(graph)
    return validator, cold, warm, validator.memo.misses - builds


def test_every_smallest_graph_validates_the_same_from_the_memo():
    parts = [_prefixed(smallest_graph(CARDS[c], CARDS[c].examples()[i]), f"{c}-{i}.") for c, i in EXAMPLES]
    graph = {"nodes": [n for p in parts for n in p["nodes"]], "edges": [e for p in parts for e in p["edges"]]}
    validator, cold, warm, builds = cold_and_warm(graph)
    assert cold["valid"], cold["errors"]
    assert warm == cold
    assert builds == 0 and validator.memo.hits > len(EXAMPLES)


def test_problems_come_back_from_the_memo_as_found():
    graph = {"nodes": [node("x", "input", shape=[3]), node("bn", "layer_BatchNormalization", axis=5),
                       node("conv", "layer_Conv2D", filters=2, kernel_size=[3, 3]),
                       node("big", "input", shape=[100_000]), node("wide", "layer_Dense", units=100_000),
                       node("y", "output"), node("z", "output")],
             "edges": [edge("x", "output", "bn", "input"), edge("x", "output", "conv", "input"),
                       edge("big", "output", "wide", "input"), edge("wide", "output", "z", "input"),
                       edge("bn", "output", "y", "input")]}
    _, cold, warm, builds = cold_and_warm(graph)
    assert sorted((p["code"], p["node"]) for p in cold["errors"]) == [
        ("param_out_of_range", "bn"), ("shape_mismatch", "conv"), ("too_large", "wide")]
    assert warm == cold and builds == 0
    assert warm["shapes"]["wide"] == {"output": [None, 100_000]}


def test_a_change_rebuilds_only_the_nodes_downstream_of_it():
    validator = Validator()
    validator.validate(chain(4))
    hits, misses = validator.memo.hits, validator.memo.misses
    changed = validator.validate(chain(5))
    # rebuilt: d0 (new units), bn0 and a0 (new input width), d1 (new input width); the rest hit
    assert (validator.memo.hits - hits, validator.memo.misses - misses) == (3, 4)
    assert changed["shapes"]["a0"] == {"output": [None, 5]} and changed["shapes"]["bn1"] == {"output": [None, 8]}
    assert Validator().validate(chain(5)) == changed


def test_a_remembered_node_still_has_its_layer_name_checked():
    validator = Validator()
    assert validator.validate(chain(4, {"d1": "dense"}))["valid"]
    clash = validator.validate(chain(4, {"d1": "dense", "bn1": "dense"}))
    assert validator.memo.hits >= 4
    assert [(p["code"], p["node"]) for p in clash["errors"]] == [("duplicate_layer_name", "bn1")]
