"""Runs the steps of a RUN on one model built from its graph, in this process.

State (moving statistics, trained weights, optimizer state) carries from step to step because
every step runs on the same model. A failure keeps the finished steps and the layers' state.
Each step kind has its handler in `STEP_HANDLERS`, keyed by the step's model type.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import ValidationError

from nncards.build.model import BuiltModel, build
from nncards.contract import arrays
from nncards.contract.errors import ErrorBody, ErrorCode, NncardsError, Problem, json_safe
from nncards.contract.events import EpochEvent, InspectEvent, StepEvent, StepState
from nncards.contract.inspection import Inspection
from nncards.contract.run import (CallResult, CallStep, EvaluateResult, EvaluateStep, FitResult, FitStep,
                                  InspectResult, InspectStep, LayerReport, ModelReport, PredictResult,
                                  PredictStep, Run, RunResult, RunStatus, StepResult)
from nncards.execute.inspect import Inspector
from nncards.execute.options import Cancelled, RunOptions

MAX_MESSAGE_CHARS = 4000
DEFAULT_COMPILE = ({"name": "adam", "learning_rate": 0.001}, "mse", [])


def _array_problem(node: str, port: str | None, message: str) -> NncardsError:
    problem = Problem(code="array_invalid", node=node, port=port, message=message)
    return NncardsError("array_invalid", message, [problem])


def weight_names(layer) -> dict[str, Any]:
    """A layer's variables keyed by short name, or by path inside the layer where names repeat."""
    variables = layer.weights
    short = [v.name for v in variables]
    if len(set(short)) == len(short):
        return dict(zip(short, variables))
    prefix = layer.name + "/"
    return {v.path.removeprefix(prefix): v for v in variables}


@contextmanager
def forgetting_custom_gradients():
    """Drop, once the run is over, the gradients `tf.custom_gradient` registered while it ran.

    In a traced function `tf.custom_gradient` registers its gradient in TensorFlow's global
    registry under a name of its own at every trace, and never removes it; the gradient's closure
    holds tensors of the trace, so the whole traced step stays in the process for good (TensorFlow
    issue 97697). Keras' TensorFlow optimizer sums every step's gradients across the replicas
    that way, one replica included, and batch normalization's XLA route writes its backward pass
    so: a long-lived worker kept every fit's training step (over 40 fits of benchmarks/runs.py's
    CNN, +69 MiB and +107k Python objects). A `GradientTape` differentiates through what it
    recorded, never through the registry, which only symbolic `tf.gradients` calls on that graph
    would read: none come once the run is over."""
    from tensorflow.python.framework import ops

    registered = ops.gradient_registry._registry  # the registry has no removal of its own
    before = set(registered)
    try:
        yield
    finally:
        for name in set(registered) - before:
            if name.startswith("CustomGradient-"):
                del registered[name]


def output_ids(model) -> list[str]:
    return list(model.output.keys()) if isinstance(model.output, dict) else []


def compile_key(optimizer: dict, loss: Any, metrics: Any) -> tuple:
    return repr(optimizer), repr(loss), repr(metrics)


def compile_model(model, optimizer: dict, loss: Any, metrics: Any) -> None:
    import keras

    arguments = {k: v for k, v in optimizer.items() if k != "name"}
    names = output_ids(model)
    if isinstance(metrics, list) and len(names) > 1:
        metrics = {output: metrics for output in names}  # Keras wants one list per output
    model.compile(optimizer=keras.optimizers.get({"class_name": optimizer["name"], "config": arguments}),
                  loss=loss, metrics=metrics or None)


def build_optimizer(model) -> None:
    """The optimizer's variables made now, before training. Without a distribution strategy
    Keras makes them in the first traced training step, and a tf.function that creates
    variables is traced a second time: a warm CNN fit took 0.8 s instead of 0.5 s."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def fit_compile(step: FitStep) -> tuple[dict, Any, Any]:
    """What a fit step compiles its model with: (optimizer, loss, metrics)."""
    return step.optimizer.model_dump(), step.loss, step.metrics


def compile_ahead(built: BuiltModel, compiled: tuple[dict, Any, Any]) -> None:
    """Compile a model built ahead as the run's first step, a fit with these `fit_compile`
    settings, will, and make its optimizer's variables: a run given the model and the settings
    (`RunOptions.compiled`) does neither again. Neither draws random numbers, so the run ends as
    if it had done both itself."""
    compile_model(built.model, *compiled)
    build_optimizer(built.model)


class RunModel:
    """One model and the state that carries between the steps of a run."""

    def __init__(self, request: Run, options: RunOptions):
        self.request, self.options = request, options
        self.built: BuiltModel = options.built or build(request.graph, options.limits, seed=request.seed)
        self.model = self.built.model
        self.output_ids = output_ids(self.model)
        self.compiled_with: tuple | None = None
        self.last_compile = DEFAULT_COMPILE
        if options.built is not None and options.compiled is not None:  # compiled ahead (`compile_ahead`)
            self.compiled_with, self.last_compile = compile_key(*options.compiled), options.compiled
        self.inspectors: dict[tuple[str, ...] | None, Inspector] = {}  # traced passes kept for the run

    # -- data -------------------------------------------------------------------------------

    def _inputs(self, given: dict[str, Any]) -> dict[str, np.ndarray]:
        specs = self.built.input_specs
        self._match_nodes(given, list(specs), "Input", "data")
        data = {}
        for node, value in given.items():
            spec = specs[node]
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
        return {node: arrays.encode(np.asarray(value), self.options.as_base64) for node, value in outputs.items()}

    # -- steps ------------------------------------------------------------------------------

    def _compile(self, optimizer: dict, loss: Any, metrics: Any) -> None:
        key = compile_key(optimizer, loss, metrics)
        if key == self.compiled_with:
            return
        compile_model(self.model, optimizer, loss, metrics)
        self.compiled_with = key
        self.last_compile = (optimizer, loss, metrics)

    def _use_xla(self, jit_compile: bool) -> None:
        """Keras reads `jit_compile` when it makes its step functions: a change drops them, so
        they are made again (the compiled loss, metrics and optimizer state stay)."""
        if self.model.jit_compile != jit_compile:
            self.model.jit_compile = jit_compile
            self.model.train_function = self.model.test_function = self.model.predict_function = None

    def check_stop(self) -> None:
        if self.options.observer.cancelled():
            raise Cancelled()

    def call(self, index: int, step: CallStep) -> CallResult:
        outputs = self.model(self._inputs(step.inputs), training=step.training)
        return CallResult(outputs=self._encode_outputs(outputs))

    def _check_fit(self, samples: int, batch_size: int) -> None:
        problems = [problem for node, built in self.built.layers.items()
                    for problem in built.card.check_fit(node, built.params, built.layer, samples, batch_size)]
        if problems:
            raise NncardsError("run_failed", problems[0].message, problems)

    def fit(self, index: int, step: FitStep) -> FitResult:
        import keras

        x, y = self._inputs(step.inputs), self._targets(step.targets)
        self._check_fit(len(next(iter(x.values()))), step.batch_size)
        self._compile(*fit_compile(step))
        self._use_xla(step.jit_compile)
        build_optimizer(self.model)
        observer = self.options.observer
        inspections: list[Inspection] = []
        inspector = self._inspector(None) if step.inspect_every else None
        sample = {node: array[:step.batch_size] for node, array in x.items()}

        class Progress(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if observer.cancelled():
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                metrics = {k: float(v) for k, v in (logs or {}).items()}
                observer.emit(EpochEvent(step=index, epoch=epoch + 1, epochs=step.epochs, metrics=json_safe(metrics)))
                if inspector is not None and (epoch + 1) % step.inspect_every == 0:
                    inspections.append(inspector.inspect(sample, training=False, epoch=epoch + 1))
                    observer.emit(InspectEvent(step=index, inspection=inspections[-1]))

        callbacks = [Progress()]
        logs = self.options.run_folder() / "tensorboard" / f"step-{index}" if step.tensorboard else None
        if logs is not None:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(logs), histogram_freq=1))
        history = self.model.fit(x, y, epochs=step.epochs, batch_size=step.batch_size, shuffle=step.shuffle,
                                 verbose=0, callbacks=callbacks)
        self.check_stop()
        return FitResult(history=json_safe({k: [float(v) for v in vs] for k, vs in history.history.items()}),
                         inspections=inspections if inspector is not None else None,
                         tensorboard=str(logs) if logs is not None else None)

    def _inspector(self, nodes: list[str] | None) -> Inspector:
        key = tuple(nodes) if nodes is not None else None
        if key not in self.inspectors:
            self.inspectors[key] = Inspector(self.built, nodes)
        return self.inspectors[key]

    def inspect(self, index: int, step: InspectStep) -> InspectResult:
        inspection = self._inspector(step.nodes).inspect(self._inputs(step.inputs), step.training)
        return InspectResult(**dict(inspection))

    def evaluate(self, index: int, step: EvaluateStep) -> EvaluateResult:
        x, y = self._inputs(step.inputs), self._targets(step.targets)
        optimizer, loss, metrics = self.last_compile
        self._compile(optimizer, step.loss if step.loss is not None else loss,
                      step.metrics if step.metrics is not None else metrics)
        self._use_xla(step.jit_compile)
        result = self.model.evaluate(x, y, batch_size=step.batch_size, verbose=0, return_dict=True)
        return EvaluateResult(metrics=json_safe({k: float(v) for k, v in result.items()}))

    def predict(self, index: int, step: PredictStep) -> PredictResult:
        self._use_xla(step.jit_compile)
        outputs = self.model.predict(self._inputs(step.inputs), batch_size=step.batch_size, verbose=0)
        if not isinstance(outputs, dict):
            outputs = dict(zip(self.output_ids, [outputs]))
        return PredictResult(outputs=self._encode_outputs(outputs))

    # -- weights ----------------------------------------------------------------------------

    def load_weights(self, weights: dict[str, dict[str, Any]]) -> None:
        for node, values in weights.items():
            built = self.built.layers.get(node)
            if built is None:
                raise _array_problem(node, None, f"weights given for {node!r}, which is not a layer node of the graph")
            variables = weight_names(built.layer)
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

    def report_layers(self) -> dict[str, LayerReport]:
        return {node: LayerReport(
            class_=type(built.layer).__name__,
            config=json_safe(built.layer.get_config()),
            weights={name: arrays.encode(np.asarray(v.numpy()), self.options.as_base64)
                     for name, v in weight_names(built.layer).items()},
            **built.card.report(built.params, built.layer),
        ) for node, built in self.built.layers.items()}

    def report_model(self) -> ModelReport:
        def shape(tensor):
            return [None if d is None else int(d) for d in tensor.shape]

        return ModelReport(
            inputs={n: shape(t) for n, t in zip(self.built.input_specs, self.model.inputs)},
            outputs={n: shape(t) for n, t in self.model.output.items()},
            params=int(self.model.count_params()),
        )


StepHandler = Callable[[RunModel, int, Any], StepResult]
STEP_HANDLERS: dict[type, StepHandler] = {
    CallStep: RunModel.call,
    FitStep: RunModel.fit,
    EvaluateStep: RunModel.evaluate,
    PredictStep: RunModel.predict,
    InspectStep: RunModel.inspect,
}


def run_steps(request: Run, options: RunOptions) -> RunResult:
    """Build the model of a checked RUN and run its steps here; failures are reported, never raised."""
    with forgetting_custom_gradients():
        return _run_steps(request, options)


def _run_steps(request: Run, options: RunOptions) -> RunResult:
    result = RunResult(run_id=options.run_id, status=RunStatus.RUNNING)
    session = None
    try:
        session = RunModel(request, options)
        result.model = session.report_model()
        session.load_weights(request.weights)
        for index, step in enumerate(request.steps):
            options.observer.emit(StepEvent(index=index, kind=step.kind, state=StepState.STARTED))
            result.steps.append(STEP_HANDLERS[type(step)](session, index, step))
            options.observer.emit(StepEvent(index=index, kind=step.kind, state=StepState.FINISHED))
            if index + 1 < len(request.steps):
                session.check_stop()
        result.status = RunStatus.SUCCEEDED
    except Cancelled:
        result.status = RunStatus.CANCELLED
        result.error = ErrorBody(code=ErrorCode.RUN_CANCELLED, message="The run was cancelled.")
    except NncardsError as exc:
        result.status = RunStatus.FAILED
        result.error = ErrorBody.model_validate(exc.body())
    except Exception as exc:  # a Keras failure mid-run: reported, with what had finished
        result.status = RunStatus.FAILED
        text = str(exc).strip()[:MAX_MESSAGE_CHARS]  # whole (users need all of it), yet bounded
        result.error = ErrorBody(code=ErrorCode.RUN_FAILED, message=f"{type(exc).__name__}: {text}" if text
                                 else type(exc).__name__)
    if session is not None:
        result.layers = session.report_layers()
    return result
