"""Exporting a graph: a readable Keras script, or a `.keras` file of the model nncards builds.

The script comes from the card declarations (`nncards.card.keras_code`). The `.keras` file is
the model nncards builds (with a RUN's weights when given), made portable first: a layer of
nncards' own whose own options are all at their defaults (batch normalization picks nncards'
subclass to reach the fused kernel) is saved as the stock Keras layer it extends, with the same
weights, so plain Keras loads the file.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from nncards.card.keras_code import NoKerasCounterpart, keras_code
from nncards.build.validation import validate
from nncards.contract.errors import ErrorCode, NncardsError, Problem, summarize
from nncards.contract.run import Run
from nncards.registry import registry

def _valid(graph: dict) -> dict:
    result = validate(graph)
    if not result["valid"]:
        problems = [Problem(**problem) for problem in result["errors"]]
        raise NncardsError(ErrorCode.GRAPH_INVALID, f"The graph is not valid: {summarize(problems)}", problems)
    return graph


def to_python(graph: dict) -> str:
    """A runnable script of the Keras functional API that builds the graph's model."""
    try:
        return keras_code(_valid(graph), registry().cards)
    except NoKerasCounterpart as exc:
        problem = Problem(code=ErrorCode.EXPORT_UNSUPPORTED, node=exc.node, received=exc.card, message=str(exc))
        raise NncardsError(ErrorCode.EXPORT_UNSUPPORTED, f"The graph cannot be written as plain Keras: {exc}", [problem])


def _stock_base(layer_class: type) -> type | None:
    """The Keras class an nncards layer class extends (None for Keras' own classes)."""
    if layer_class.__module__.startswith("keras"):
        return None
    return next((c for c in layer_class.__mro__ if c.__module__.startswith("keras.src.layers")), None)


def _stock_copy(layer):
    """The stock Keras layer an nncards layer stands for, or the layer itself when one of its
    own options is set away from its default (or it is Keras' own)."""
    base = _stock_base(type(layer))
    if base is None:
        return layer
    accepted = set(inspect.signature(base).parameters) | {"name", "trainable", "dtype"}
    defaults = {name: p.default for name, p in inspect.signature(type(layer)).parameters.items()}
    config = layer.get_config()
    own = {key: value for key, value in config.items() if key not in accepted}
    if any(key not in defaults or value != defaults[key] for key, value in own.items()):
        return layer
    shared = {key: value for key, value in config.items() if key in accepted}
    try:
        stock = base(**shared)
    except (TypeError, ValueError):  # an argument only nncards' layer takes in that form (an axis list)
        return layer
    return stock


def portable(model):
    """The model with every nncards layer that equals its stock Keras base replaced by that base."""
    import keras

    copies = {}

    def clone(layer):
        copies[layer.name] = (layer, _stock_copy(layer))
        return copies[layer.name][1]

    if not any(_stock_base(type(layer)) for layer in model.layers):
        return model
    copy = keras.models.clone_model(model, clone_function=clone)
    for original, replacement in copies.values():
        if replacement is not original:
            replacement.set_weights(original.get_weights())
    return copy


def to_keras(document: dict, path: str | Path) -> None:
    """Write the `.keras` file of a GRAPH (fresh weights from seed 0) or of a RUN (its seed and
    `weights`)."""
    from nncards.execute.options import RunOptions
    from nncards.execute.runner import RunModel

    run = Run.model_validate(document if "graph" in document else {"graph": document})
    _valid(run.graph.model_dump(exclude_none=True))
    built = RunModel(run, RunOptions())
    built.load_weights(run.weights)
    portable(built.model).save(str(path))
