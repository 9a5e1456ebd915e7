"""Models in and out: Keras models imported as graphs (with their weights), graphs exported as a
Keras script or a `.keras` file, and models nncards cannot express refused layer by layer."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import nncards
from nncards.cli import main as cli
from nncards.build.model import build
from nncards.contract import arrays
from nncards.contract.graph import Graph
from nncards.contract.errors import NncardsError
from nncards.execute.runner import weight_names
from nncards.interchange.export import portable, to_keras, to_python
from nncards.interchange.keras_import import import_config, import_model, load_weights, read_model_file

def seeded(model, seed: int = 0):
    """The model with its vectors (biases, batch normalization state) moved off their initial
    values, so a weight loaded into the wrong place shows in the outputs."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = variable.numpy()
        if variable.path.endswith("moving_variance"):
            variable.assign(rng.uniform(0.5, 1.5, value.shape).astype(value.dtype))
        elif value.ndim <= 1:
            variable.assign((value + rng.normal(0, 0.1, value.shape)).astype(value.dtype))
    return model


def saved(model, tmp_path, name="model.keras") -> bytes:
    path = tmp_path / name
    model.save(path)
    return path.read_bytes()


def rebuilt(run: dict):
    """nncards' model of an imported RUN, with its weights loaded."""
    model = nncards.build_model(run["graph"])
    layers = {layer.name: layer for layer in model.layers}
    for node, values in run["weights"].items():
        variables = weight_names(layers[node])
        for name, value in values.items():
            variables[name].assign(arrays.decode(value))
    return model


def output_of(model, x):
    result = model(x)
    if isinstance(result, dict):
        (result,) = result.values()
    return np.asarray(result)


def configs(model) -> dict:
    """Each layer's config by name, nncards' own layers (whose options are unset) as the stock
    Keras layers they extend, as an export writes them."""
    return {layer.name: layer.get_config() for layer in portable(model).layers}


def comparable(graph: dict) -> tuple:
    """A graph up to positions and the order of its lists."""
    nodes = sorted((n["id"], n["card"], json.dumps(n["params"], sort_keys=True)) for n in graph["nodes"])
    edges = sorted(json.dumps(e, sort_keys=True) for e in graph["edges"])
    return nodes, edges


# -- keras.applications, one per family ---------------------------------------------------------

FAMILIES = {
    "residual": ("ResNet50", 32, {}),
    "depthwise": ("MobileNet", 32, {"alpha": 0.25}),
    "densely connected": ("DenseNet121", 32, {}),
    "inception": ("InceptionV3", 75, {}),
    # V1 keeps its input normalization's statistics as weights, which the Normalization card takes as params
    "squeeze-and-excitation": ("EfficientNetV2B0", 32, {"include_preprocessing": False}),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_application_imports_with_the_same_config_and_outputs(family, tmp_path):
    name, size, options = FAMILIES[family]
    keras.utils.set_random_seed(1)
    original = seeded(getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None, **options))
    source = read_model_file(saved(original, tmp_path))
    imported = import_config(source.config)
    cards = {n["card"] for n in imported.graph["nodes"]}
    assert "layer_BatchNormalization" in cards and "input" in cards and "output" in cards
    built = build(Graph.model_validate(imported.graph))
    load_weights({node: layer.layer for node, layer in built.layers.items()}, imported, source.weights)
    expected, got = configs(original), configs(built.model)
    assert got == {layer: expected[layer] for layer in got}
    assert set(expected) - set(got) <= {original.layers[0].name}  # the Input keeps its name
    x = np.random.default_rng(2).normal(0, 1, (2, size, size, 3)).astype("float32")
    np.testing.assert_allclose(output_of(built.model, x), output_of(original, x), atol=1e-5)


# -- hand-made models: sharing, nesting, companions, several inputs and outputs -----------------

def shared_and_nested():
    """Two inputs, a nested Sequential and a nested functional model, a layer shared by both
    branches, a merge, a non-shorthand initializer and two outputs."""
    inner_in = keras.Input((6,), name="inner_in")
    inner = keras.Model(inner_in, keras.layers.Dense(6, activation="tanh", name="inner_dense")(inner_in), name="inner")
    stack = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name="stack_dense"),
                              keras.layers.LayerNormalization(name="stack_norm")], name="stack")
    a, b = keras.Input((4,), name="a"), keras.Input((6,), name="b")
    shared = keras.layers.Dense(5, kernel_initializer=keras.initializers.RandomNormal(stddev=0.3),
                                kernel_regularizer=keras.regularizers.L2(0.01), name="shared")
    left, right = shared(inner(stack(a))), shared(b)
    merged = keras.layers.Concatenate(name="merged")([left, right])
    return keras.Model({"a": a, "b": b}, {"joined": keras.layers.Dense(3, name="head")(merged), "right": right})


def test_shared_layers_nested_models_and_companions_import_exactly(tmp_path):
    keras.utils.set_random_seed(3)
    original = seeded(shared_and_nested())
    run = import_model(saved(original, tmp_path), with_weights=True)
    nodes = {n["id"]: n for n in run["graph"]["nodes"]}
    edges = run["graph"]["edges"]
    assert nodes["shared"]["params"] == {"units": 5, "kernel_regularizer": "l2"}
    assert nodes["shared.kernel_initializer"] == {**nodes["shared.kernel_initializer"], "card": "initializer_RandomNormal",
                                                  "params": {"stddev": 0.3}}
    again = [n for n in nodes.values() if n["card"] == "apply_layer"]
    assert len(again) == 1 and {"source": "shared", "source_port": "layer", "target": again[0]["id"],
                                "target_port": "layer"} in edges
    assert {"inner_dense", "stack_dense", "stack_norm"} <= set(nodes)  # the sub-models flattened
    assert [e["source"] for e in edges if e["target"] == "merged"] == ["shared", again[0]["id"]]
    assert {n["id"] for n in nodes.values() if n["card"] in ("input", "output")} == {"a", "b", "joined", "right"}
    assert all(isinstance(n["position"]["x"], (int, float)) for n in nodes.values())
    model = rebuilt(run)
    rng = np.random.default_rng(4)
    x = {"a": rng.normal(size=(3, 4)).astype("float32"), "b": rng.normal(size=(3, 6)).astype("float32")}
    expected, got = original(x), model(x)
    for key in ("joined", "right"):
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]), atol=1e-5)


ROUND_TRIP = {"schema_version": 1, "nodes": [
    {"id": "a", "card": "input", "params": {"shape": [4]}},
    {"id": "b", "card": "input", "params": {"shape": [4], "name": "second"}},
    {"id": "dense", "card": "layer_Dense", "params": {"units": 4, "activation": "relu", "bias_regularizer": "l1"}},
    {"id": "dense.kernel_initializer", "card": "initializer_Constant", "params": {"value": 0.5}},
    {"id": "dense.again", "card": "apply_layer", "params": {}},
    {"id": "sum", "card": "mergeLayer_Add", "params": {}},
    {"id": "bn", "card": "layer_BatchNormalization", "params": {"momentum": 0.9, "gamma_initializer": "zeros"}},
    {"id": "y", "card": "output", "params": {}},
    {"id": "z", "card": "output", "params": {}},
], "edges": [
    {"source": "a", "source_port": "output", "target": "dense", "target_port": "input"},
    {"source": "dense.kernel_initializer", "source_port": "initializer", "target": "dense", "target_port": "kernel_initializer"},
    {"source": "dense", "source_port": "layer", "target": "dense.again", "target_port": "layer"},
    {"source": "b", "source_port": "output", "target": "dense.again", "target_port": "input"},
    {"source": "dense", "source_port": "output", "target": "sum", "target_port": "inputs"},
    {"source": "dense.again", "source_port": "output", "target": "sum", "target_port": "inputs"},
    {"source": "sum", "source_port": "output", "target": "bn", "target_port": "input"},
    {"source": "bn", "source_port": "output", "target": "y", "target_port": "input"},
    {"source": "dense.again", "source_port": "output", "target": "z", "target_port": "input"},
]}


def test_graph_to_keras_file_to_graph_is_the_same_graph(tmp_path):
    path = tmp_path / "round.keras"
    to_keras(ROUND_TRIP, path)
    again = import_model(path.read_bytes())
    assert comparable(again) == comparable(ROUND_TRIP)


def test_exported_keras_file_loads_in_plain_keras_and_predicts_what_nncards_does(tmp_path):
    x = np.random.default_rng(5).normal(size=(3, 4)).astype("float32")
    run = {"graph": ROUND_TRIP, "seed": 7, "steps": [
        {"kind": "fit", "inputs": {"a": x.tolist(), "b": x.tolist()}, "targets": {"y": x.tolist(), "z": x.tolist()},
         "epochs": 2, "batch_size": 3},
        {"kind": "predict", "inputs": {"a": x.tolist(), "b": x.tolist()}}]}
    result = nncards.run(run)
    assert result["status"] == "succeeded", result["error"]
    trained = {"graph": ROUND_TRIP, "weights": {node: layer["weights"] for node, layer in result["layers"].items()}}
    to_keras(trained, tmp_path / "trained.keras")
    loaded = keras.saving.load_model(tmp_path / "trained.keras")  # safe mode: no nncards class needed
    assert all(type(layer).__module__.startswith("keras.") for layer in loaded.layers)
    predicted = loaded.predict({"a": x, "b": x}, verbose=0)  # keyed by node id
    for output in ("y", "z"):
        np.testing.assert_allclose(predicted[output], result["steps"][1]["outputs"][output], atol=1e-5)


# -- export to Python ---------------------------------------------------------------------------

SCRIPT_CHECK = """
import json, sys
import numpy as np
exec(open(sys.argv[1]).read())
weights = np.load(sys.argv[2])
for layer in model.layers:
    layer.set_weights([weights[f"{layer.name}/{i}"] for i in range(len(layer.weights))])
x = {key: np.load(sys.argv[3])[key] for key in model.input}
outputs = {key: np.asarray(value).tolist() for key, value in model(x).items()}
configs = {layer.name: layer.get_config() for layer in model.layers}
print(json.dumps({"configs": configs, "outputs": outputs}, default=str))
"""


def test_exported_python_script_builds_the_same_model(tmp_path):
    keras.utils.set_random_seed(6)
    graph = import_model(saved(seeded(shared_and_nested()), tmp_path))
    script = to_python(graph)
    assert script.startswith("import keras\n") and "keras.Model(" in script
    assert "shared = keras.layers.Dense(units=5, " in script.replace("shared_layer", "shared")
    assert "kernel_initializer=shared_kernel_initializer" in script
    model = nncards.build_model(graph)
    weights = {f"{layer.name}/{i}": np.asarray(w) for layer in model.layers for i, w in enumerate(layer.get_weights())}
    rng = np.random.default_rng(8)
    x = {"a": rng.normal(size=(2, 4)).astype("float32"), "b": rng.normal(size=(2, 6)).astype("float32")}
    (tmp_path / "model.py").write_text(script)
    np.savez(tmp_path / "weights.npz", **weights)
    np.savez(tmp_path / "x.npz", **x)
    done = subprocess.run([sys.executable, "-c", SCRIPT_CHECK, *(str(tmp_path / f) for f in ("model.py", "weights.npz", "x.npz"))],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    built = json.loads(done.stdout.strip().splitlines()[-1])
    expected = json.loads(json.dumps(configs(model), default=str))
    assert built["configs"] == expected
    ours = model(x)
    for key, value in built["outputs"].items():
        np.testing.assert_allclose(value, np.asarray(ours[key]), atol=1e-5)


# -- refusals -----------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="tests")
class Doubling(keras.layers.Layer):
    def call(self, x):
        return x * 2


def test_custom_layers_and_lambdas_are_refused_with_every_offending_layer(tmp_path):
    x = keras.Input((3,), name="x")
    custom = keras.Model(x, Doubling(name="twice")(keras.layers.Dense(3, name="d")(Doubling(name="once")(x))))
    with pytest.raises(NncardsError) as refused:
        import_model(saved(custom, tmp_path, "custom.keras"))
    assert refused.value.code == "import_unsupported"
    problems = refused.value.body()["errors"]
    assert [(p["node"], p["received"]) for p in problems] == [("once", "Doubling"), ("twice", "Doubling")]
    assert all("custom class" in p["message"] for p in problems)

    y = keras.Input((3,), name="y")
    lambdas = keras.Model(y, keras.layers.Lambda(lambda t: t + 1, name="plus")(keras.layers.Lambda(lambda t: -t, name="neg")(y)))
    config = lambdas.to_json().encode()
    with pytest.raises(NncardsError) as refused:
        import_model(config)
    problems = refused.value.body()["errors"]
    assert [(p["node"], p["received"]) for p in problems] == [("neg", "Lambda"), ("plus", "Lambda")]
    assert all("arbitrary Python function" in p["message"] for p in problems)


# -- the command line ---------------------------------------------------------------------------

def test_cli_imports_with_weights_and_exports(tmp_path, capsys):
    keras.utils.set_random_seed(9)
    model = seeded(shared_and_nested())
    saved(model, tmp_path)
    assert cli(["import", str(tmp_path / "model.keras"), "--weights", str(tmp_path / "run.json")]) == 0
    graph = json.loads(capsys.readouterr().out)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["graph"] == graph
    np.testing.assert_allclose(arrays.decode(run["weights"]["head"]["kernel"]),
                               model.get_layer("head").kernel.numpy())
    (tmp_path / "graph.json").write_text(json.dumps(graph))
    assert cli(["export", str(tmp_path / "graph.json"), "--to", "python"]) == 0
    assert capsys.readouterr().out == to_python(graph)
    assert cli(["export", str(tmp_path / "run.json"), "--to", "keras", "-o", str(tmp_path / "out.keras")]) == 0
    assert (tmp_path / "out.keras").stat().st_size > 0

    (tmp_path / "lambda.json").write_text(keras.Model(model.input, keras.layers.Lambda(lambda t: t, name="same")(
        model.output["joined"])).to_json())
    capsys.readouterr()
    assert cli(["import", str(tmp_path / "lambda.json")]) == 1
    refusal = json.loads(capsys.readouterr().out)
    assert refusal["error"]["code"] == "import_unsupported"
    assert [p["node"] for p in refusal["error"]["errors"]] == ["same"]


def test_learned_statistics_become_params_from_the_weights_file(tmp_path):
    """A Normalization layer that learned its mean and variance (`adapt`, as EfficientNet's
    input does) keeps them as weights: the import reads them there into the card's params."""
    x = keras.Input((3,), name="x")
    norm = keras.layers.Normalization(name="norm")
    model = keras.Model(x, keras.layers.Dense(2, name="head")(norm(keras.layers.Rescaling(0.5, name="half")(x))))
    data = np.random.default_rng(10).normal(4, 3, (32, 3)).astype("float32")
    norm.adapt(data * 0.5)
    run = import_model(saved(model, tmp_path), with_weights=True)
    params = next(n["params"] for n in run["graph"]["nodes"] if n["id"] == "norm")
    np.testing.assert_allclose(params["mean"], norm.mean.numpy().ravel())
    assert "norm" not in run["weights"]
    np.testing.assert_allclose(output_of(rebuilt(run), data), output_of(model, data), atol=1e-5)
    with pytest.raises(NncardsError) as refused:
        import_model(model.to_json().encode())
    assert "were learned and are kept as weights" in refused.value.body()["errors"][0]["message"]


def test_paddings_and_croppings_of_every_rank_import_as_flat_margins(tmp_path):
    """Keras writes margins as pairs per axis; the cards take one number per axis when both
    sides agree, one per side otherwise (NASNet's asymmetric croppings among them)."""
    image, sequence, volume = keras.Input((8, 8, 3), name="image"), keras.Input((10, 4), name="sequence"), \
        keras.Input((2, 2, 2, 1), name="volume")
    cropped = keras.layers.Cropping2D(((1, 0), (1, 0)), name="crop")(image)
    padded = keras.layers.ZeroPadding2D(2, name="pad")(keras.layers.ZeroPadding2D(((1, 2), (0, 1)), name="skew")(cropped))
    model = keras.Model({"image": image, "sequence": sequence, "volume": volume},
                        {"a": padded, "b": keras.layers.Cropping1D((2, 1), name="trim")(sequence),
                         "c": keras.layers.ZeroPadding3D(1, name="cube")(volume)})
    graph = import_model(model.to_json().encode())
    params = {n["id"]: n["params"] for n in graph["nodes"]}
    assert params["crop"] == {"cropping": [1, 0, 1, 0]} and params["skew"] == {"padding": [1, 2, 0, 1]}
    assert params["pad"] == {"padding": [2, 2]} and params["trim"] == {"cropping": [2, 1]} and params["cube"] == {}
    to_keras(graph, tmp_path / "margins.keras")
    assert comparable(import_model((tmp_path / "margins.keras").read_bytes())) == comparable(graph)
