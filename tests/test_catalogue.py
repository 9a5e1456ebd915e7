"""Catalogue-wide checks: every card builds and predicts in its smallest graph, every port has
help, every bounded parameter refuses a value outside its bounds, and initializer ports know the
rank of their weight."""

import numpy as np
import pytest

import nncards
from nncards.docs.smallest import smallest_graph, smallest_run
from nncards.registry import registry
from nncards.contract.types import INSTANCE_TYPES

CARDS = registry().cards
EXAMPLES = [(card_id, index) for card_id, card in CARDS.items() for index in range(len(card.examples()))]
LAYER_CARDS = ["Dense", "Activation", "ReLU", "LeakyReLU", "Softmax", "Dropout", "SpatialDropout2D",
               "GaussianNoise", "Flatten", "Reshape", "Permute", "Conv1D", "Conv2D", "Conv2DTranspose",
               "DepthwiseConv2D", "SeparableConv2D", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D",
               "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
               "ZeroPadding2D", "UpSampling2D", "Masking", "Embedding", "SimpleRNN", "LSTM", "GRU",
               "LayerNormalization", "GroupNormalization", "UnitNormalization", "TimeDistributed", "Bidirectional"]
MERGE_CARDS = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot"]


def test_the_issue_catalogue_is_complete():
    expected = {f"layer_{c}" for c in LAYER_CARDS} | {f"mergeLayer_{c}" for c in MERGE_CARDS} | {"apply_layer"}
    assert expected <= set(CARDS)
    for card_id in expected - {"apply_layer"}:
        assert CARDS[card_id].keras == f"keras.layers.{card_id.split('_', 1)[1]}"


def _prefixed(graph: dict, prefix: str) -> dict:
    nodes = [{**n, "id": prefix + n["id"]} for n in graph["nodes"]]
    edges = [{**e, "source": prefix + e["source"], "target": prefix + e["target"]} for e in graph["edges"]]
    return {"nodes": nodes, "edges": edges}


@pytest.mark.parametrize("card_id, index", EXAMPLES, ids=[f"{c}-{i}" for c, i in EXAMPLES])
def test_every_example_builds_in_the_smallest_graph(card_id, index):
    card = CARDS[card_id]
    validation = nncards.validate(smallest_graph(card, card.examples()[index]))
    assert validation["valid"], validation["errors"]


# One model per category of the catalogue: a failure names its category, and no model grows
# with the whole catalogue (the categories together cost what one model of everything would).
FAMILIES: dict[str, list[tuple[str, int]]] = {}
for card_id, index in EXAMPLES:
    FAMILIES.setdefault("/".join(CARDS[card_id].path[:2]), []).append((card_id, index))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_example_predicts_in_one_model_per_category(family):
    """A category's smallest graphs side by side in one model (one predict instead of dozens)."""
    examples = FAMILIES[family]
    runs = {f"{card_id}-{index}.": smallest_run(CARDS[card_id], CARDS[card_id].examples()[index], batch=2)
            for card_id, index in examples}
    parts = [_prefixed(run["graph"], prefix) for prefix, run in runs.items()]
    inputs = {prefix + node: value for prefix, run in runs.items() for node, value in run["steps"][0]["inputs"].items()}
    graph = {"schema_version": 1, "nodes": [n for p in parts for n in p["nodes"]], "edges": [e for p in parts for e in p["edges"]]}
    result = nncards.run({"graph": graph, "seed": 0, "steps": [{"kind": "predict", "inputs": inputs, "batch_size": 2}]})
    assert result["status"] == "succeeded", result["error"]
    outputs = result["steps"][0]["outputs"]
    assert len(outputs) == len(examples)
    for output_id, shape in result["model"]["outputs"].items():
        assert np.asarray(outputs[output_id], dtype=float).shape == (2, *shape[1:]), output_id
    for prefix in runs:
        card = CARDS[prefix.split("-")[0]]
        # a node is reported in the run's layers exactly when its card makes a layer
        assert (prefix + "n" in result["layers"]) == card.makes_layer, prefix


def test_every_card_and_port_has_help():
    for card in CARDS.values():
        assert card.title and card.help.strip(), card.id
        for port in [*card.inputs(), *card.outputs]:
            assert port.help.strip(), f"{card.id}.{port.id} has no help"
            assert port.text.strip(), f"{card.id}.{port.id} has no label"


def _bounded(schema: dict):
    """(bound keyword, bound, whether it bounds list items, list length, integer?) of a property."""
    for member in schema.get("anyOf", [schema]):
        target, in_list = (member["items"], True) if member.get("type") == "array" and "items" in member else (member, False)
        for keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
            if keyword in target:
                yield keyword, target[keyword], in_list, member.get("minItems", 1), target.get("type") == "integer"


def _outside(keyword: str, bound: float, integer: bool):
    step = 1 if integer else 0.5
    return {"minimum": bound - step, "exclusiveMinimum": bound, "maximum": bound + step, "exclusiveMaximum": bound}[keyword]


BOUNDED = [(card_id, name, *bound) for card_id, card in CARDS.items()
           for name, schema in card.params_schema()["properties"].items() for bound in _bounded(schema)]


def test_bounded_parameters_are_many():
    assert len(BOUNDED) > 60
    assert {("layer_Dropout", "rate", "maximum"), ("layer_Conv2D", "kernel_size", "minimum"),
            ("layer_LayerNormalization", "epsilon", "exclusiveMinimum")} <= {b[:3] for b in BOUNDED}


@pytest.mark.parametrize("card_id, name, keyword, bound, in_list, length, integer", BOUNDED,
                         ids=[f"{b[0]}.{b[1]}.{b[2]}" for b in BOUNDED])
def test_bounded_parameters_refuse_values_outside(card_id, name, keyword, bound, in_list, length, integer):
    card = CARDS[card_id]
    value = _outside(keyword, bound, integer)
    params = {**card.examples()[0], name: [value] * length if in_list else value}
    validated, problems = card.validate_params("n", params)
    assert validated is None
    assert {(p.code, p.port) for p in problems} == {("param_out_of_range", name)}, problems


def test_initializer_ports_declare_the_rank_of_their_weight():
    for card in CARDS.values():
        if not card.makes_layer:
            continue
        initializers = {p.id for p in card.inputs() if p.type == "NeuralNetworkInitializer"}
        assert initializers == set(card.weight_ranks), card.id


@pytest.mark.parametrize("card_id, port, identifier, refused", [
    ("layer_Dense", "kernel_initializer", "identity", False),
    ("layer_Dense", "bias_initializer", "identity", True),
    ("layer_LSTM", "recurrent_initializer", "orthogonal", False),
    ("layer_Conv2D", "bias_initializer", "orthogonal", True),
    ("layer_LayerNormalization", "gamma_initializer", "orthogonal", True),
])
def test_rank_hungry_initializers_are_refused_on_vectors(card_id, port, identifier, refused):
    card = CARDS[card_id]
    graph = smallest_graph(card, {**card.examples()[0], port: identifier})
    errors = nncards.validate(graph)["errors"]
    assert [(e["code"], e["node"], e["port"]) for e in errors] == ([("param_invalid", "n", port)] if refused else [])


def test_instance_cards_are_tried_on_a_consumer():
    card = next(c for c in CARDS.values() if c.outputs and c.outputs[0].type in INSTANCE_TYPES)
    graph = smallest_graph(card)
    assert {"n", "c"} <= {n["id"] for n in graph["nodes"]}
