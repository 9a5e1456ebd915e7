"""Keras 2 models (tf.keras, tf_keras) read as data, in the form the importer walks.

Two files carry a Keras 2 model: the legacy HDF5 file `model.save("x.h5")` writes (the model's
JSON config in the root's `model_config` attribute, the weights in `model_weights/<layer>`
listed by each group's `weight_names` attribute) and the JSON config `model.to_json()` writes,
with an HDF5 weights file from `model.save_weights("w.h5")` beside it (the same groups at the
root). The HDF5 file is opened with h5py and only its plain datasets are read: a link that
leaves the file's own objects, a dataset stored in another file or assembled from others, and
anything that is not a number array are refused before a value is read, so reading a file
never reaches past it. Nothing in the file is unpickled or run.

A Keras 2 config is rewritten into Keras 3's shape (the keyword form of a layer's calls, the
input layer's `batch_shape`, the module of initializers, regularizers and constraints, dtype
policies as their names, float32 numbers as the decimals they were given), so that the one
importer reads both. Two Keras 2 habits need their meaning restored: a built batch
normalization layer writes its axes as a list of positive integers (`[3]` for `-1` on a 4-D
input), and with ghost batches each of them one too high (tf_keras adds a dimension for the
groups at build time and keeps the shifted axes in its config, so tf_keras cannot read such a
file back itself); and a nested model made on its own inputs has its calls counted from 1.
"""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from nncards.contract.errors import ErrorCode, NncardsError, Problem

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
KERAS_TENSOR = "__keras_tensor__"
CONSTANT_INPUT = "_CONSTANT_VALUE"  # tf_keras' marker of a call on a constant instead of a layer's output
MODEL_CLASSES = {"Functional", "Model", "Sequential"}
INSTANCE_MODULES = {"_initializer": "keras.initializers", "_regularizer": "keras.regularizers",
                    "_constraint": "keras.constraints"}
# Arguments Keras 3 renamed, by layer class.
RENAMED_ARGUMENTS = {("LeakyReLU", "alpha"): "negative_slope"}
# Dataset element kinds a weight may have: floats, signed and unsigned integers, booleans.
NUMBER_KINDS = set("fiub")
# The compression filters HDF5 and h5py carry (deflate, shuffle, fletcher32, szip, n-bit,
# scale-offset, LZF): any other would make HDF5 look for a plugin library to load.
BUILT_IN_FILTERS = {1, 2, 3, 4, 5, 6, 32000}


@dataclass(frozen=True)
class LegacyWeight:
    """One array of a Keras 2 weights file: the layer group it sits in and its variable name
    (`"bn/gamma:0"`, nested models' layers under the nested model's group)."""

    group: str
    name: str
    value: Any  # numpy array

    @property
    def path(self) -> list[str]:
        """The variable name's parts without the `:0` suffix: `["bn", "gamma"]`."""
        return self.name.split(":")[0].split("/")


@dataclass(frozen=True)
class Hdf5Model:
    """What a Keras 2 HDF5 file holds: the model's config (absent from a weights file) and its
    weights (absent from a model saved without them)."""

    config: dict | None
    weights: list[LegacyWeight] | None


def is_hdf5(data: bytes) -> bool:
    return data[:8] == HDF5_SIGNATURE


def _unreadable(message: str) -> NncardsError:
    return NncardsError(ErrorCode.BAD_REQUEST, message)


def read_hdf5(data: bytes, max_bytes: int) -> Hdf5Model:
    """The config and weights of a Keras 2 HDF5 file (`model.save` or `model.save_weights`);
    `bad_request` for a file h5py cannot read or that is no Keras file, `too_large` when its
    arrays would unpack to more than `max_bytes`."""
    config, weights = _read_contained(data, max_bytes, _contents)
    if config is None and weights is None:
        raise _unreadable("the HDF5 file holds neither a Keras model config nor Keras weights")
    return Hdf5Model(config, weights)


def check_hdf5(data: bytes, max_bytes: int) -> None:
    """Refuse an HDF5 file as `read_hdf5` would before reading it: for the weights file of a
    `.keras` archive, which Keras' own reader reads then."""
    _read_contained(data, max_bytes, lambda file: None)


def _contents(file) -> tuple[dict | None, list[LegacyWeight] | None]:
    root = file["model_weights"] if "model_weights" in file else file
    return _model_config(file), _weights(root) if "layer_names" in root.attrs else None


def _read_contained(data: bytes, max_bytes: int, reader):
    """`reader(file)` of the HDF5 file, once `_check_contained` found nothing to refuse."""
    import h5py

    try:
        with h5py.File(io.BytesIO(data), "r") as file:
            _check_contained(file, max_bytes)
            return reader(file)
    except NncardsError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise _unreadable(f"not a readable Keras HDF5 file: {type(exc).__name__}: {str(exc)[:200]}") from None


def _check_contained(file, max_bytes: int) -> None:
    """Refuse a file whose reading would leave it, or unpack beyond `max_bytes`, before any read."""
    import h5py

    total = 0

    def refusal(name: str, link) -> NncardsError | None:  # h5py's visit stops at the first one returned
        nonlocal total
        if not isinstance(link, h5py.HardLink):
            return _unreadable(f"the HDF5 file links {name!r} elsewhere ({type(link).__name__}); "
                               "a Keras file holds its own objects only")
        item = file[name]
        if isinstance(item, h5py.Dataset):
            layout = item.id.get_create_plist()
            if item.is_virtual or layout.get_external_count():
                return _unreadable(f"the HDF5 dataset {name!r} stores its values in other files")
            filters = {layout.get_filter(index)[0] for index in range(layout.get_nfilters())}
            if filters - BUILT_IN_FILTERS:
                return _unreadable(f"the HDF5 dataset {name!r} needs compression filters "
                                   f"{sorted(filters - BUILT_IN_FILTERS)}, which are not HDF5's own")
            if item.dtype.kind not in NUMBER_KINDS:
                return _unreadable(f"the HDF5 dataset {name!r} holds {item.dtype}, not numbers")
            total += item.size * item.dtype.itemsize
            if total > max_bytes:
                return NncardsError(ErrorCode.TOO_LARGE,
                                    f"the HDF5 file's arrays unpack to more than {max_bytes} bytes")
        return None

    found = file.visititems_links(refusal)
    if found is not None:
        raise found


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _model_config(file) -> dict | None:
    if "model_config" not in file.attrs:
        return None
    try:
        config = json.loads(_text(file.attrs["model_config"]))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _unreadable(f"the HDF5 file's model_config is not JSON: {exc}") from None
    if isinstance(config, dict) and "keras_version" not in config and "keras_version" in file.attrs:
        config["keras_version"] = _text(file.attrs["keras_version"])  # the file says which Keras wrote it
    return config


def _weights(root) -> list[LegacyWeight]:
    weights = []
    for group_name in (_text(n) for n in root.attrs["layer_names"]):
        group = root[group_name]
        for name in (_text(n) for n in group.attrs.get("weight_names", [])):
            weights.append(LegacyWeight(group_name, name, group[name][()]))
    return weights


# -- Keras 2 configs in Keras 3's form ----------------------------------------------------------

def is_keras2(config: dict) -> bool:
    """Whether Keras 2 wrote the config: it says so, or a layer's calls are in its list form."""
    if str(config.get("keras_version", "")).startswith("2."):
        return True
    layers = config.get("config", {}).get("layers") if isinstance(config.get("config"), dict) else None
    return any(isinstance(call, list) for layer in layers or () if isinstance(layer, dict)
               for call in layer.get("inbound_nodes") or ())


class Keras2Config:
    """Rewrites a Keras 2 model config in Keras 3's form; collects the calls a graph cannot
    express (on a constant instead of a layer's output) as problems, by layer."""

    def __init__(self):
        self.problems: list[Problem] = []

    def model(self, entry: dict) -> dict:
        class_name, config = entry["class_name"], entry["config"]
        if class_name == "Sequential":
            layers = config if isinstance(config, list) else config["layers"]  # Keras 2.0-2.1: a bare list
            built = isinstance(config, dict) and bool(config.get("build_input_shape"))
            config = {**({} if isinstance(config, list) else config), "layers": self.sequential(layers, built)}
        elif isinstance(config.get("layers"), list):
            # A nested model made on its own inputs has a first call of its own, which Keras 2
            # leaves out of the config while still counting it: its calls there start at 1.
            counted_from_one = {layer.get("name") for layer in config["layers"] if _has_own_first_call(layer)}
            history = functools.partial(_renumbered, counted_from_one)
            config = {**config, "layers": [self.functional_layer(layer, history) for layer in config["layers"]],
                      "output_layers": _histories(config["output_layers"], history, as_tensors=False)}
        return {**entry, "config": config}

    def sequential(self, layers: list[dict], built: bool) -> list[dict]:
        """The layers, with the input layer Keras 2 kept in the first layer's `batch_input_shape`.
        Its layers were built (and wrote built configs) when it knew its input's shape."""
        first = layers[0]["config"] if layers else {}
        built = built or bool(layers) and (layers[0]["class_name"] == "InputLayer" or "batch_input_shape" in first)
        converted = [self.layer(layer, built) for layer in layers]
        if layers and layers[0]["class_name"] != "InputLayer" and first.get("batch_input_shape"):
            name = f"{first.get('name', 'layer')}_input"  # Keras 2's name for it
            converted.insert(0, {"class_name": "InputLayer", "config": {
                "batch_shape": first["batch_input_shape"], "dtype": _dtype(first.get("dtype", "float32")),
                "name": name}})
        return converted

    def functional_layer(self, layer: dict, history) -> dict:
        converted = self.layer(layer, built=True)  # a functional model's layers were called
        converted["inbound_nodes"] = [self.call(layer.get("name", ""), call, history)
                                      for call in layer.get("inbound_nodes", [])]
        return converted

    def layer(self, layer: dict, built: bool) -> dict:
        class_name = layer["class_name"]
        if class_name in MODEL_CLASSES:
            return self.model(layer)
        config = {}
        for key, value in layer["config"].items():
            if key == "batch_input_shape":
                if class_name == "InputLayer":
                    config["batch_shape"] = value
                continue  # a first layer's input shape: its input layer (above) keeps it
            if key == "dtype":
                value = _dtype(value)
            elif isinstance(value, dict) and "class_name" in value and key.endswith(tuple(INSTANCE_MODULES)):
                value = _instance(key, value)
            config[RENAMED_ARGUMENTS.get((class_name, key), key)] = _decimal(value)
        if class_name == "BatchNormalization":
            config = _batch_normalization(config, built)
        return {**layer, "config": config}

    def call(self, name: str, call: Any, history) -> Any:
        """A call of Keras 2's list form `[[layer, node, tensor, kwargs], ...]` as
        `{"args": [...], "kwargs": {...}}`: one tensor, or a list of them (a merge). `history`
        gives a tensor's `[layer, call, tensor]` as Keras 3 counts the calls."""
        if isinstance(call, dict):
            return call
        entries = [entry for entry in call] if isinstance(call, list) else []
        if not entries or not all(isinstance(e, list) and len(e) in (3, 4) for e in entries):
            raise ValueError(f"layer {name!r} has a call that is neither Keras 2's nor Keras 3's form: {call!r}")
        if any(entry[0] == CONSTANT_INPUT for entry in entries):
            self.problems.append(Problem(code=ErrorCode.UNSUPPORTED_LAYER, node=name, received="call",
                                         message=f"layer {name!r} is called on a constant, not on a layer's "
                                         "output; a graph wires layers only"))
        tensors = [_tensor(history(entry[:3])) for entry in entries if entry[0] != CONSTANT_INPUT]
        kwargs = entries[0][3] if len(entries[0]) == 4 else {}
        return {"args": [tensors[0] if len(tensors) == 1 else tensors],
                "kwargs": _histories(kwargs, history, as_tensors=True)}


def _has_own_first_call(layer: dict) -> bool:
    """Whether a layer is a model made on its own inputs (tf_keras' `_should_skip_first_node`)."""
    config = layer.get("config")
    if layer.get("class_name") in ("Functional", "Model"):
        return True
    if layer.get("class_name") != "Sequential":
        return False
    layers = config if isinstance(config, list) else (config or {}).get("layers") or []
    return bool(layers) and (layers[0].get("class_name") == "InputLayer"
                             or "batch_input_shape" in layers[0].get("config", {}))


def _renumbered(counted_from_one: set[str], history: list) -> list:
    name, call, tensor = history
    return [name, call - 1 if name in counted_from_one else call, tensor]


def _tensor(history: list) -> dict:
    return {"class_name": KERAS_TENSOR, "config": {"keras_history": history}}


def _histories(value: Any, history, as_tensors: bool) -> Any:
    """`value` with each Keras 2 tensor (`[layer, call, tensor]`) renumbered by `history`, and
    with `as_tensors` written as Keras 3's tensor objects."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) \
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:]):
        return _tensor(history(value)) if as_tensors else history(value)
    if isinstance(value, list):
        return [_histories(v, history, as_tensors) for v in value]
    if isinstance(value, dict):
        return {key: _histories(v, history, as_tensors) for key, v in value.items()}
    return value


def _dtype(value: Any) -> Any:
    """A dtype policy (`{"class_name": "Policy", "config": {"name": "mixed_float16"}}`) as its name."""
    if isinstance(value, dict) and isinstance(value.get("config"), dict) and "name" in value["config"]:
        return value["config"]["name"]
    return value


def _instance(key: str, value: dict) -> dict:
    """An initializer, regularizer or constraint config with the module Keras 3 names it by."""
    module = next(m for suffix, m in INSTANCE_MODULES.items() if key.endswith(suffix))
    return {"module": module, "registered_name": None, **value}


def _decimal(value: Any) -> Any:
    """Numbers as they were given: Keras 2 keeps some arguments as float32 (a regularizer's
    factor, `LeakyReLU`'s `alpha`, `ReLU`'s bounds) and writes that float32 (0.01 as
    0.009999999776482582). A float that is exactly a float32 is read as the shortest decimal of
    that float32, which is the same float32 again."""
    if isinstance(value, float) and np.isfinite(value) and float(np.float32(value)) == value:
        return float(str(np.float32(value)))
    if isinstance(value, list):
        return [_decimal(v) for v in value]
    if isinstance(value, dict):
        return {key: _decimal(v) for key, v in value.items()}
    return value


def _batch_normalization(config: dict, built: bool) -> dict:
    """A Keras 2 batch normalization config with the axes it was given: a built ghost-batch
    layer's list is one too high per axis, and one axis is an integer."""
    axis = config.get("axis", -1)
    if isinstance(axis, list):
        if built and config.get("virtual_batch_size") is not None and all(isinstance(a, int) for a in axis):
            axis = [a - 1 for a in axis]
        axis = axis[0] if len(axis) == 1 else axis
    return {**config, "axis": axis}


def keras3_config(config: dict) -> tuple[dict, list[Problem]]:
    """A Keras 2 model config in Keras 3's form, and the problems of calls it cannot express."""
    converter = Keras2Config()
    converted = converter.model(config)
    return converted, converter.problems
