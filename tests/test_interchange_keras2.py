"""Keras 2 models in: a tf_keras `.h5` file and a Keras 2 JSON config (with its `.h5` weights)
imported as graphs with their weights, numerically equal to tf_keras (the oracle, a test-only
dependency), and out again as a Keras 3 `.keras` file that plain Keras 3 loads in safe mode.
Files nncards must not read (corrupt, a `Lambda`, links leaving the file) are refused."""

import json
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tf_keras

import nncards
from nncards.cli import main as cli
from nncards.contract import arrays
from nncards.contract.errors import NncardsError
from nncards.interchange.keras2 import read_hdf5
from nncards.interchange.keras_import import import_model

from test_interchange import output_of, rebuilt

TOL = {"atol": 1e-5, "rtol": 1e-5}


def legacy_model():
    """Every Keras 2 option of batch normalization, between a convolution and a dense layer."""
    layers = tf_keras.layers
    image = tf_keras.Input((6, 6, 3), name="image")
    x = layers.Conv2D(4, 3, padding="same", name="conv")(image)
    x = layers.BatchNormalization(fused=True, momentum=0.9, epsilon=1e-4, name="bn_fused")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.BatchNormalization(virtual_batch_size=2, center=False,
                                  gamma_constraint=tf_keras.constraints.MaxNorm(3.0), name="bn_ghost")(x)
    x = layers.BatchNormalization(renorm=True, renorm_clipping={"rmax": 2.0, "rmin": 0.5, "dmax": 1.0},
                                  renorm_momentum=0.9, name="bn_renorm")(x)
    x = layers.BatchNormalization(axis=[1, 3], gamma_regularizer=tf_keras.regularizers.l2(0.01),
                                  beta_initializer="random_normal", name="bn_axes")(x)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Flatten(name="flat")(x)
    return tf_keras.Model(image, layers.Dense(2, name="dense")(x))


def moved(model, rng):
    """The model after a few training calls (moving and renorm statistics off their starting
    values) with its trainable vectors perturbed, so a misplaced weight shows in the outputs."""
    for step in range(3):
        model(rng.normal(step, 1 + step, (4, 6, 6, 3)).astype("float32"), training=True)
    for variable in model.trainable_weights:
        variable.assign(variable + rng.normal(0, 0.2, variable.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    """The tf_keras model saved as `.h5`, its JSON config and weights file, and its outputs on
    one batch in inference and in training mode (each training call from the saved state)."""
    folder = tmp_path_factory.mktemp("keras2")
    rng = np.random.default_rng(18)
    model = moved(legacy_model(), rng)
    model.save(folder / "legacy_model.h5")
    model.save_weights(folder / "weights.h5")
    (folder / "model.json").write_text(model.to_json())
    x = rng.normal(0.5, 2, (4, 6, 6, 3)).astype("float32")
    saved_variance = model.get_layer("bn_axes").moving_variance.numpy()
    inference = model(x, training=False).numpy()
    training = model(x, training=True).numpy()  # moves the statistics: last
    return {"folder": folder, "x": x, "inference": inference, "training": training, "saved_variance": saved_variance}


def nodes_of(graph):
    return {node["id"]: node for node in graph["nodes"]}


def test_h5_imports_every_batch_normalization_option_and_tf_keras_outputs(legacy, capsys):
    folder = legacy["folder"]
    assert cli(["import", str(folder / "legacy_model.h5"), "--weights", str(folder / "run.json")]) == 0
    graph = json.loads(capsys.readouterr().out)
    params = {node: n["params"] for node, n in nodes_of(graph).items()}
    assert params["bn_fused"] == {"axis": 3, "momentum": 0.9, "epsilon": 1e-4}
    assert params["bn_ghost"] == {"axis": 3, "virtual_batch_size": 2, "center": False}  # tf_keras wrote axis [4]
    constraint = next(e["source"] for e in graph["edges"]
                      if e["target"] == "bn_ghost" and e["target_port"] == "gamma_constraint")
    assert nodes_of(graph)[constraint]["params"] == {"max_value": 3.0}
    assert params["bn_renorm"] == {"axis": 3, "renorm": True, "renorm_momentum": 0.9,
                                   "renorm_clipping": {"rmax": 2.0, "rmin": 0.5, "dmax": 1.0}}
    assert params["bn_axes"] == {"axis": [1, 3], "gamma_regularizer": "l2", "beta_initializer": "random_normal"}
    run = json.loads((folder / "run.json").read_text())
    assert run["graph"] == graph
    assert set(run["weights"]["bn_renorm"]) == {"gamma", "beta", "moving_mean", "moving_variance",
                                                "moving_stddev", "renorm_mean", "renorm_stddev"}
    # Keras 2 keeps these (1, 1, 1, 1, 4) and (1, 6, 1, 4): the card's are flat
    assert arrays.decode(run["weights"]["bn_ghost"]["moving_mean"]).shape == (4,)
    np.testing.assert_array_equal(arrays.decode(run["weights"]["bn_axes"]["moving_variance"]),
                                  legacy["saved_variance"].reshape(-1))

    x = legacy["x"]
    np.testing.assert_allclose(output_of(rebuilt(run), x), legacy["inference"], **TOL)
    training = rebuilt(run)(x, training=True)
    np.testing.assert_allclose(np.asarray(next(iter(training.values()))), legacy["training"], **TOL)


def test_h5_exports_to_a_keras3_file_plain_keras_loads_with_the_same_outputs(legacy):
    folder = legacy["folder"]
    path = folder / "migrated.keras"
    run = import_model((folder / "legacy_model.h5").read_bytes(), with_weights=True)
    (folder / "migrating.json").write_text(json.dumps(run))
    assert cli(["export", str(folder / "migrating.json"), "--to", "keras", "-o", str(path)]) == 0
    # plain Keras 3, in safe mode: nncards' layer is found by its registered name
    loaded = keras.saving.load_model(path, safe_mode=True)
    by_name = {layer.name: layer for layer in loaded.layers}
    assert by_name["bn_ghost"].virtual_batch_size == 2 and list(by_name["bn_axes"].axes) == [1, 3]
    assert type(by_name["bn_axes"]).__module__ == "nncards.layers.batch_normalization"
    x = legacy["x"]
    np.testing.assert_allclose(output_of(loaded, x), legacy["inference"], **TOL)
    training = loaded(x, training=True)
    np.testing.assert_allclose(np.asarray(next(iter(training.values()))), legacy["training"], **TOL)


def test_keras2_json_config_with_its_weights_file_is_the_h5_import(legacy):
    folder = legacy["folder"]
    config = (folder / "model.json").read_bytes()
    from_h5 = import_model((folder / "legacy_model.h5").read_bytes(), with_weights=True)
    assert import_model(config) == from_h5["graph"]
    weights_file = (folder / "weights.h5").read_bytes()
    assert import_model(config, weights_file=weights_file) == from_h5
    # tf_keras leaves `fused` out of its configs (its value changes no number): one that has it keeps it
    with_fused = json.loads(config)
    next(layer for layer in with_fused["config"]["layers"] if layer["name"] == "bn_fused")["config"]["fused"] = True
    run = import_model(json.dumps(with_fused).encode(), weights_file=weights_file)
    assert nodes_of(run["graph"])["bn_fused"]["params"] == {"axis": 3, "momentum": 0.9, "epsilon": 1e-4, "fused": True}
    model = rebuilt(run)
    assert model.get_layer("bn_fused").fused_kernel
    np.testing.assert_allclose(output_of(model, legacy["x"]), legacy["inference"], **TOL)
    with pytest.raises(NncardsError) as refused:  # a weights file is no model
        import_model((folder / "weights.h5").read_bytes())
    assert refused.value.code == "bad_request" and "weights only" in refused.value.message


def test_keras2_sequential_and_merges_from_json(tmp_path):
    """A Sequential model and a functional one with merges, written as Keras 2 JSON, with the
    older habits: no input layer (the first layer's `batch_input_shape`), initializers without
    a module, a dtype policy, `LeakyReLU`'s `alpha`."""
    layers = tf_keras.layers
    rng = np.random.default_rng(4)
    sequential = tf_keras.Sequential([
        layers.Dense(5, input_shape=(4,), kernel_initializer="he_normal", name="first"),
        layers.BatchNormalization(momentum=0.8, scale=False, name="bn"),
        layers.Activation("tanh", name="tanh"),
        layers.Dropout(0.3, name="drop"),
        layers.LeakyReLU(alpha=0.2, name="leaky"),
        layers.Dense(2, name="last"),
    ], name="seq")
    moved_weights = [w + rng.normal(0, 0.1, w.shape).astype("float32") for w in sequential.get_weights()]
    moved_weights[3] = np.abs(moved_weights[3]) + 0.5  # moving variance
    sequential.set_weights(moved_weights)
    config = json.loads(sequential.to_json())
    config["config"]["layers"].pop(0)  # Keras 2 before 2.4 kept no input layer...
    first = config["config"]["layers"][0]["config"]
    first["batch_input_shape"] = [None, 4]  # ...but the first layer's input shape
    first["kernel_initializer"] = {"class_name": "HeNormal", "config": {"seed": None}}  # and no module
    first["dtype"] = {"class_name": "Policy", "config": {"name": "float32"}}
    sequential.save_weights(tmp_path / "seq.h5")
    run = import_model(json.dumps(config).encode(), weights_file=(tmp_path / "seq.h5").read_bytes())
    params = {node: n["params"] for node, n in nodes_of(run["graph"]).items()}
    assert params["first"] == {"units": 5, "kernel_initializer": "he_normal"}
    assert params["bn"] == {"axis": 1, "momentum": 0.8, "scale": False}  # Keras 2 wrote the axis it built with
    assert params["leaky"] == {"negative_slope": 0.2}
    assert params["first_input"] == {"shape": [4]}
    x = rng.normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(output_of(rebuilt(run), x), sequential(x).numpy(), **TOL)

    a, b = tf_keras.Input((4, 4, 2), name="a"), tf_keras.Input((4, 4, 2), name="b")
    summed = layers.Add(name="sum")([layers.Conv2D(2, 1, name="ca")(a), b])
    joined = layers.Concatenate(name="join")([summed, layers.AveragePooling2D(1, name="avg")(a)])
    merged = tf_keras.Model([a, b], layers.GlobalAveragePooling2D(name="gap")(joined))
    graph = import_model(merged.to_json().encode())
    into = sorted((e["source"], e["target"]) for e in graph["edges"] if e["target_port"] == "inputs")
    assert into == [("avg", "join"), ("b", "sum"), ("ca", "sum"), ("sum", "join")]
    model = nncards.build_model(graph)
    model.get_layer("ca").set_weights(merged.get_layer("ca").get_weights())
    xs = [rng.normal(size=(2, 4, 4, 2)).astype("float32") for _ in range(2)]
    np.testing.assert_allclose(output_of(model, {"a": xs[0], "b": xs[1]}), merged(xs).numpy(), **TOL)


def test_unreadable_and_unsafe_h5_files_are_refused(legacy, tmp_path):
    data = (legacy["folder"] / "legacy_model.h5").read_bytes()
    for corrupt in (data[:len(data) // 2], data[:8] + b"\0" * 600):
        with pytest.raises(NncardsError) as refused:
            import_model(corrupt)
        assert refused.value.code == "bad_request", refused.value.message

    leaking = tmp_path / "leaking.h5"
    leaking.write_bytes(data)
    with h5py.File(leaking, "r+") as file:
        file["model_weights/conv/elsewhere"] = h5py.ExternalLink("/etc/hostname", "/")
    with pytest.raises(NncardsError) as refused:
        import_model(leaking.read_bytes(), with_weights=True)
    assert refused.value.code == "bad_request" and "ExternalLink" in refused.value.message

    # the same link in the weights of a Keras 3 `.keras` file (read by Keras' own reader)
    small = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="d")])
    small.save(tmp_path / "small.keras")
    with zipfile.ZipFile(tmp_path / "small.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    (tmp_path / "weights.h5").write_bytes(members["model.weights.h5"])
    with h5py.File(tmp_path / "weights.h5", "r+") as file:
        file["layers/dense/elsewhere"] = h5py.ExternalLink("/etc/hostname", "/")
    members["model.weights.h5"] = (tmp_path / "weights.h5").read_bytes()
    with zipfile.ZipFile(tmp_path / "leaking.keras", "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(NncardsError) as refused:
        import_model((tmp_path / "leaking.keras").read_bytes(), with_weights=True)
    assert refused.value.code == "bad_request" and "ExternalLink" in refused.value.message

    bomb = tmp_path / "bomb.h5"  # under 100 kB that would unpack to 64 MiB
    with h5py.File(bomb, "w") as file:
        file.create_dataset("zeros", data=np.zeros(2**23), compression="gzip", chunks=(2**20,))
    assert bomb.stat().st_size < 10**5
    with pytest.raises(NncardsError) as refused:
        read_hdf5(bomb.read_bytes(), max_bytes=2**25)
    assert refused.value.code == "too_large"

    image = tf_keras.Input((3,), name="image")
    hidden = tf_keras.layers.Dense(3, name="hidden")(image)
    lambdas = tf_keras.Model(image, tf_keras.layers.Lambda(lambda t: t * 2, name="double")(hidden))
    lambdas.save(tmp_path / "lambda.h5")
    with pytest.raises(NncardsError) as refused:
        import_model((tmp_path / "lambda.h5").read_bytes(), with_weights=True)
    assert refused.value.code == "import_unsupported"
    problems = refused.value.body()["errors"]
    assert [(p["code"], p["node"], p["received"]) for p in problems] == [("unsupported_layer", "double", "Lambda")]


def test_a_keras2_call_on_a_constant_is_refused_and_keras3_h5_files_import(tmp_path):
    constant_call = {"class_name": "Functional", "keras_version": "2.15.0", "config": {
        "name": "m", "input_layers": [["x", 0, 0]], "output_layers": [["sum", 0, 0]], "layers": [
            {"class_name": "InputLayer", "name": "x", "inbound_nodes": [],
             "config": {"batch_input_shape": [None, 2], "dtype": "float32", "name": "x"}},
            {"class_name": "Add", "name": "sum", "config": {"name": "sum"},
             "inbound_nodes": [[["x", 0, 0, {}], ["_CONSTANT_VALUE", -1, [1.0, 2.0], {}]]]}]}}
    with pytest.raises(NncardsError) as refused:
        import_model(json.dumps(constant_call).encode())
    assert refused.value.code == "import_unsupported"
    assert [(p["node"], p["received"]) for p in refused.value.body()["errors"]] == [("sum", "call")]

    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.BatchNormalization(momentum=0.9, name="bn")(keras.layers.Dense(3, name="d")(x)))
    model.save(tmp_path / "keras3.h5")  # Keras 3's legacy format: its own config, weights named "d/kernel"
    run = import_model((tmp_path / "keras3.h5").read_bytes(), with_weights=True)
    data = np.random.default_rng(2).normal(size=(2, 4)).astype("float32")
    np.testing.assert_allclose(output_of(rebuilt(run), data), output_of(model, data), **TOL)


def test_nested_keras2_models_flatten_with_their_weights(tmp_path):
    """A Sequential and a functional model inside a functional one (a backbone and a block, as
    in transfer learning): Keras 2 numbers their calls from 1 and files their weights under them."""
    layers, rng = tf_keras.layers, np.random.default_rng(7)
    backbone = tf_keras.Sequential([layers.Dense(4, input_shape=(3,), name="inner_dense"),
                                    layers.BatchNormalization(virtual_batch_size=2, name="inner_bn")], name="backbone")
    block_input = tf_keras.Input((4,), name="block_input")
    block = tf_keras.Model(block_input, layers.BatchNormalization(axis=[1], name="block_bn")(block_input), name="block")
    x = tf_keras.Input((3,), name="x")
    model = tf_keras.Model(x, layers.Dense(2, name="head")(block(backbone(x))))
    moved_data = rng.normal(1, 2, (4, 3)).astype("float32")
    model(moved_data, training=True)
    model.save(tmp_path / "nested.h5")
    run = import_model((tmp_path / "nested.h5").read_bytes(), with_weights=True)
    assert {"inner_dense", "inner_bn", "block_bn", "head"} <= set(run["weights"])
    data = rng.normal(size=(4, 3)).astype("float32")
    ours = rebuilt(run)
    np.testing.assert_allclose(output_of(ours, data), model(data).numpy(), **TOL)
    trained = ours(data, training=True)
    np.testing.assert_allclose(np.asarray(next(iter(trained.values()))), model(data, training=True).numpy(), **TOL)
    # the usual transfer-learning call keeps the backbone in inference mode, which a flat graph cannot
    frozen = tf_keras.Model(x, layers.Dense(2, name="top")(backbone(x, training=False)))
    with pytest.raises(NncardsError) as refused:
        import_model(frozen.to_json().encode())
    assert [(p["node"], p["received"]) for p in refused.value.body()["errors"]] == [("backbone", "Sequential")]
    assert "training=False" in refused.value.message
