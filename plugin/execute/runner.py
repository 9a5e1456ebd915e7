"""The executor: builds one Keras model from a graph and runs the steps of a RUN on it.

State (moving statistics, trained weights, optimizer state) carries from step to step because
every step runs on the same model. A failure keeps the finished steps and the layers' state.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from nncards.contract import arrays
from nncards.contract.graph import Graph
from nncards.contract.limits import DEFAULT_LIMITS, Limits
from nncards.contract.errors import NncardsError, Problem, json_safe, summarize
from nncards.contract.run import CallStep, EvaluateStep, FitStep, PredictStep, Run
from nncards.build.validation import check, trace


class Observer(Protocol):
    """What a caller learns while a run goes, and how it asks the run to stop."""

    def step(self, index: int, kind: str, state: str) -> None: ...
    def epoch(self, step: int, epoch: int, epochs: int, metrics: dict) -> None: ...
    def cancelled(self) -> bool: ...


class SilentObserver:
    def step(self, index, kind, state):
        pass

    def epoch(self, step, epoch, epochs, metrics):
        pass

    def cancelled(self):
        return False


class Cancelled(Exception):
    pass


def _array_problem(node: str, port: str | None, message: str) -> NncardsError:
    problem = Problem(code="array_invalid", node=node, port=port, message=message)
    return NncardsError("array_invalid", message, [problem])


def build(graph: Graph, limits: Limits = DEFAULT_LIMITS, seed: int | None = None):
    """The Keras model of a graph, with its layers and inputs keyed by node id."""
    import keras

    analysis, problems, _ = check(graph, limits)
    if not problems:
        if seed is not None:
            # Seeded after the check: how much randomness the check consumes depends on what
            # its memo already holds, and must not change the weights.
            keras.utils.set_random_seed(seed)
        traced = trace(analysis, limits)
        problems = traced.problems
    if problems:
        raise NncardsError("graph_invalid", f"The graph is not valid: {summarize(problems)}", problems)
    inputs = {n: traced.values[n]["output"] for n in analysis.nodes_with_role("input")}
    outputs = {n: traced.sockets[n]["input"] for n in analysis.nodes_with_role("output")}
    model = keras.Model(inputs=inputs, outputs=outputs, name="nncards")
    layers = {n: v["layer"] for n, v in traced.values.items() if analysis.cards[n].makes_layer and "layer" in v}
    input_specs = {n: analysis.params[n] for n in inputs}
    return model, layers, input_specs


def build_model(graph: dict | Graph):
    graph = graph if isinstance(graph, Graph) else Graph.model_validate(graph)
    return build(graph)[0]


def weight_names(layer) -> dict[str, Any]:
    """A layer's variables keyed by short name, or by path inside the layer where names repeat."""
    variables = layer.weights
    short = [v.name for v in variables]
    if len(set(short)) == len(short):
        return dict(zip(short, variables))
    prefix = layer.name + "/"
    return {v.path.removeprefix(prefix): v for v in variables}


class Session:
    """One model and the state that carries between the steps of a run."""

    def __init__(self, request: Run, limits: Limits, observer: Observer, as_base64: bool):
        self.request, self.limits, self.observer, self.as_base64 = request, limits, observer, as_base64
        self.model, self.layers, self.input_specs = build(request.graph, limits, seed=request.seed)
        self.output_ids = list(self.model.output.keys()) if isinstance(self.model.output, dict) else []
        self.compiled_with: tuple | None = None

    # -- data -------------------------------------------------------------------------------

    def _inputs(self, given: dict[str, Any]) -> dict[str, np.ndarray]:
        self._match_nodes(given, list(self.input_specs), "Input", "data")
        data = {}
        for node, value in given.items():
            spec = self.input_specs[node]
            array = self._decode(node, value, spec.dtype)
            expected = [None, *spec.shape]
            if array.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected, array.shape)):
                raise _array_problem(node, "shape", f"data for {node!r} has shape {list(array.shape)}, "
                                     f"the Input takes {expected} (batch first)")
            data[node] = array
        self._same_batch(data, "inputs")
        return data

    def _targets(self, given: dict[str, Any]) -> dict[str, np.ndarray]:
        self._match_nodes(given, self.output_ids, "Output", "targets")
        data = {}
        for node, value in given.items():
            dtype = self.model.output[node].dtype
            data[node] = self._decode(node, value, "float32" if "float" in str(dtype) else str(dtype))
        self._same_batch(data, "targets")
        return data

    @staticmethod
    def _match_nodes(given: dict[str, Any], nodes: list[str], card: str, what: str) -> None:
        unknown = sorted(set(given) - set(nodes))
        if unknown:
            raise _array_problem(unknown[0], None, f"{unknown[0]!r} is not an {card} node of the graph "
                                 f"({card} nodes: {', '.join(nodes)})")
        missing = sorted(set(nodes) - set(given))
        if missing:
            raise _array_problem(missing[0], None, f"no {what} given for {card} node {missing[0]!r}")

    @staticmethod
    def _decode(node: str, value: Any, dtype: str) -> np.ndarray:
        try:
            return arrays.cast(arrays.decode(value.model_dump() if hasattr(value, "model_dump") else value), dtype)
        except (arrays.ArrayError, ValidationError) as exc:
            raise _array_problem(node, None, f"data for {node!r}: {exc}") from None

    @staticmethod
    def _same_batch(data: dict[str, np.ndarray], what: str) -> None:
        sizes = {node: a.shape[0] if a.ndim else None for node, a in data.items()}
        if len(set(sizes.values())) > 1:
            node = next(iter(sizes))
            raise _array_problem(node, None, f"the {what} disagree on the batch size: {sizes}")

    def _encode_outputs(self, outputs) -> dict[str, Any]:
        return {node: arrays.encode(np.asarray(value), self.as_base64) for node, value in outputs.items()}

    # -- steps ------------------------------------------------------------------------------

    def _compile(self, optimizer: dict, loss: Any, metrics: Any) -> None:
        import keras

        key = (repr(optimizer), repr(loss), repr(metrics))
        if key == self.compiled_with:
            return
        arguments = {k: v for k, v in optimizer.items() if k != "name"}
        if isinstance(metrics, list) and len(self.output_ids) > 1:
            metrics = {output: metrics for output in self.output_ids}  # Keras wants one list per output
        self.model.compile(
            optimizer=keras.optimizers.get({"class_name": optimizer["name"], "config": arguments}),
            loss=loss, metrics=metrics or None,
        )
        self.compiled_with = key
        self.last_compile = (optimizer, loss, metrics)

    def _check_stop(self):
        if self.observer.cancelled():
            raise Cancelled()

    def call(self, index: int, step: CallStep) -> dict:
        outputs = self.model(self._inputs(step.inputs), training=step.training)
        return {"kind": "call", "outputs": self._encode_outputs(outputs)}

    def fit(self, index: int, step: FitStep) -> dict:
        import keras

        x, y = self._inputs(step.inputs), self._targets(step.targets)
        for layer_node, layer in self.layers.items():
            check = getattr(layer, "check_fit", None)
            if check:
                check(layer_node, len(next(iter(x.values()))), step.batch_size)
        self._compile(step.optimizer.model_dump(), step.loss, step.metrics)
        session = self

        class Progress(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if session.observer.cancelled():
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                metrics = {k: float(v) for k, v in (logs or {}).items()}
                session.observer.epoch(index, epoch + 1, step.epochs, json_safe(metrics))

        history = self.model.fit(x, y, epochs=step.epochs, batch_size=step.batch_size, shuffle=step.shuffle,
                                 verbose=0, callbacks=[Progress()])
        self._check_stop()
        return {"kind": "fit", "history": json_safe({k: [float(v) for v in vs] for k, vs in history.history.items()})}

    def evaluate(self, index: int, step: EvaluateStep) -> dict:
        x, y = self._inputs(step.inputs), self._targets(step.targets)
        optimizer, loss, metrics = getattr(self, "last_compile", ({"name": "adam", "learning_rate": 0.001}, "mse", []))
        self._compile(optimizer, step.loss if step.loss is not None else loss,
                      step.metrics if step.metrics is not None else metrics)
        result = self.model.evaluate(x, y, batch_size=step.batch_size, verbose=0, return_dict=True)
        return {"kind": "evaluate", "metrics": json_safe({k: float(v) for k, v in result.items()})}

    def predict(self, index: int, step: PredictStep) -> dict:
        outputs = self.model.predict(self._inputs(step.inputs), batch_size=step.batch_size, verbose=0)
        if not isinstance(outputs, dict):
            outputs = dict(zip(self.output_ids, [outputs]))
        return {"kind": "predict", "outputs": self._encode_outputs(outputs)}

    # -- weights ----------------------------------------------------------------------------

    def load_weights(self, weights: dict[str, dict[str, Any]]) -> None:
        for node, values in weights.items():
            layer = self.layers.get(node)
            if layer is None:
                raise _array_problem(node, None, f"weights given for {node!r}, which is not a layer node of the graph")
            variables = weight_names(layer)
            for name, value in values.items():
                variable = variables.get(name)
                if variable is None:
                    raise _array_problem(node, name, f"layer {node!r} has no weight {name!r} "
                                         f"(weights: {', '.join(variables)})")
                array = self._decode(node, value, "float32")
                if tuple(array.shape) != tuple(variable.shape):
                    raise _array_problem(node, name, f"weight {name!r} of {node!r} has shape "
                                         f"{list(variable.shape)}, got {list(array.shape)}")
                variable.assign(array.astype(variable.dtype))

    def report_layers(self) -> dict[str, Any]:
        report = {}
        for node, layer in self.layers.items():
            entry = {
                "class": type(layer).__name__,
                "config": json_safe(layer.get_config()),
                "weights": {name: arrays.encode(np.asarray(v.numpy()), self.as_base64)
                            for name, v in weight_names(layer).items()},
            }
            entry.update(getattr(layer, "run_report", dict)())
            report[node] = entry
        return report

    def report_model(self) -> dict[str, Any]:
        def shape(tensor):
            return [None if d is None else int(d) for d in tensor.shape]

        return {
            "inputs": {n: shape(t) for n, t in zip(self.input_specs, self.model.inputs)},
            "outputs": {n: shape(t) for n, t in self.model.output.items()},
            "params": int(self.model.count_params()),
        }


def count_array_elements(request: Run) -> int:
    total = sum(arrays.count_elements(v if isinstance(v, list) else v.model_dump())
                for layer in request.weights.values() for v in layer.values())
    for step in request.steps:
        for group in (step.inputs, getattr(step, "targets", {})):
            total += sum(arrays.count_elements(v if isinstance(v, list) else v.model_dump()) for v in group.values())
    return total


def run(request: dict | Run, observer: Observer | None = None, limits: Limits = DEFAULT_LIMITS,
        run_id: str | None = None, as_base64: bool = False) -> dict:
    """Run a RUN and return its RUN RESULT; failures are reported in it, never raised."""
    observer = observer or SilentObserver()
    result: dict[str, Any] = {"run_id": run_id or uuid.uuid4().hex, "status": "running", "error": None,
                              "steps": [], "layers": {}, "model": None}
    session = None
    try:
        if not isinstance(request, Run):
            try:
                request = Run.model_validate(request)
            except ValidationError as exc:
                problems = [Problem(code="request_invalid", port="/".join(map(str, e["loc"])), message=e["msg"])
                            for e in exc.errors()]
                raise NncardsError("request_invalid", "The run request does not fit the RUN model.", problems)
        elements = count_array_elements(request)
        if elements > limits.max_array_elements:
            raise NncardsError("too_large", f"the request holds {elements} array elements, more than the limit "
                               f"of {limits.max_array_elements}")
        if request.distribution is not None:
            from nncards.execute.distributed import run_distributed

            return run_distributed(request, observer, limits, result["run_id"], as_base64)
        session = Session(request, limits, observer, as_base64)
        result["model"] = session.report_model()
        session.load_weights(request.weights)
        for index, step in enumerate(request.steps):
            observer.step(index, step.kind, "started")
            result["steps"].append(getattr(session, step.kind)(index, step))
            observer.step(index, step.kind, "finished")
            if index + 1 < len(request.steps):
                session._check_stop()
        result["status"] = "succeeded"
    except Cancelled:
        result["status"] = "cancelled"
        result["error"] = {"code": "run_cancelled", "message": "The run was cancelled."}
    except NncardsError as exc:
        result["status"] = "failed"
        result["error"] = exc.body()
    except Exception as exc:  # a Keras failure mid-run: reported, with what had finished
        result["status"] = "failed"
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result["error"] = {"code": "run_failed", "message": f"{type(exc).__name__}: {text}"}
    if session is not None:
        result["layers"] = session.report_layers()
    return result
