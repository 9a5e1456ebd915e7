"""The RUN request and RUN RESULT of CONTRACT §6 as Pydantic models."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, InstanceOf, PlainSerializer
from pydantic.json_schema import SkipJsonSchema

from nncards.contract.arrays import Base64Array, encode
from nncards.contract.errors import ErrorBody, ErrorCode, NncardsError
from nncards.contract.graph import Graph
from nncards.contract.inspection import Inspection

# An ARRAY of CONTRACT §6; from Python (and from the server to its workers) also a NumPy array,
# which never appears in a JSON schema and is written as a base64 block when the request is.
NumpyArray = Annotated[InstanceOf[np.ndarray], PlainSerializer(lambda array: encode(array, as_base64=True),
                                                               when_used="json")]
ArrayIn = Union[list[Any], Base64Array, SkipJsonSchema[NumpyArray]]

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "ftrl", "lion")
LOSSES = (
    "mse", "mae", "mape", "msle", "mean_squared_error", "mean_absolute_error",
    "mean_absolute_percentage_error", "mean_squared_logarithmic_error", "binary_crossentropy",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_focal_crossentropy",
    "categorical_focal_crossentropy", "hinge", "squared_hinge", "categorical_hinge", "huber",
    "log_cosh", "kl_divergence", "poisson", "cosine_similarity",
)
METRICS = (
    "mse", "mae", "mape", "msle", "mean_squared_error", "mean_absolute_error", "accuracy",
    "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "binary_crossentropy",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "kl_divergence", "poisson",
    "cosine_similarity", "root_mean_squared_error", "hinge", "squared_hinge", "log_cosh_error",
)
Loss = Literal[LOSSES]
Metric = Literal[METRICS]
Arrays = dict[str, ArrayIn]
ARRAY_FIELDS = ("inputs", "targets")  # a step's fields of arrays keyed by node id, whatever its kind
MAX_BATCH_SIZE = 2**31 - 1  # Keras counts batches in C longs


class Optimizer(BaseModel):
    """A Keras optimizer by name; other keys are passed to its constructor as arguments."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    # The other arguments of Keras' optimizers are all scalars: nothing else reaches the constructor.
    __pydantic_extra__: dict[str, bool | int | float | None] = Field(init=False)
    name: Literal[OPTIMIZERS] = Field("adam", description="The Keras optimizer.")
    learning_rate: float = Field(0.001, gt=0, description="Step size.")


class StepKind(StrEnum):
    CALL = "call"
    FIT = "fit"
    EVALUATE = "evaluate"
    PREDICT = "predict"
    INSPECT = "inspect"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


JitCompile = Annotated[bool, Field(
    description="Compile the step's computation with XLA, where every layer of the model supports it "
    "(otherwise the step runs uncompiled, as Keras does).")]


class StepBase(BaseModel):
    """What every step has: its kind, and the arrays it carries (each counted against the limits)."""

    model_config = ConfigDict(extra="forbid")

    def array_groups(self) -> list[dict[str, ArrayIn]]:
        """The step's arrays keyed by node id (inputs, targets), whatever its kind: the limits count them all."""
        return [group for field in ARRAY_FIELDS if (group := getattr(self, field, None)) is not None]

    def arrays(self) -> list[ArrayIn]:
        return [value for group in self.array_groups() for value in group.values()]


class CallStep(StepBase):
    kind: Literal[StepKind.CALL]
    inputs: Arrays = Field(description="Arrays keyed by Input node id.")
    training: bool = Field(False, description="Run layers in training mode (batch statistics, updates).")


class FitStep(StepBase):
    kind: Literal[StepKind.FIT]
    inputs: Arrays = Field(description="Arrays keyed by Input node id.")
    targets: Arrays = Field(description="Arrays keyed by Output node id.")
    epochs: int = Field(1, ge=1, le=100_000)
    batch_size: int = Field(32, ge=1, le=MAX_BATCH_SIZE)
    shuffle: bool = True
    optimizer: Optimizer = Field(default_factory=Optimizer)
    loss: Loss | dict[str, Loss] = Field("mse", description="A loss, or one per Output node id.")
    metrics: list[Metric] | dict[str, list[Metric]] = Field(default_factory=list)
    inspect_every: int | None = Field(
        None, ge=1, description="Inspect the model (as an `inspect` step of all nodes would, in inference mode) "
        "on the first batch of the inputs after every this many epochs; sent as `inspect` events.")
    tensorboard: bool = Field(False, description="Write TensorBoard logs (scalars, weight histograms) in the "
                              "run's folder of the data directory.")
    jit_compile: JitCompile = False


class EvaluateStep(StepBase):
    kind: Literal[StepKind.EVALUATE]
    inputs: Arrays
    targets: Arrays
    batch_size: int = Field(32, ge=1, le=MAX_BATCH_SIZE)
    loss: Loss | dict[str, Loss] | None = Field(None, description="Default: the last compile's, else mse.")
    metrics: list[Metric] | dict[str, list[Metric]] | None = None
    jit_compile: JitCompile = False


class PredictStep(StepBase):
    kind: Literal[StepKind.PREDICT]
    inputs: Arrays
    batch_size: int = Field(32, ge=1, le=MAX_BATCH_SIZE)
    jit_compile: JitCompile = False


class InspectStep(StepBase):
    kind: Literal[StepKind.INSPECT]
    inputs: Arrays = Field(description="Arrays keyed by Input node id.")
    training: bool = Field(False, description="Run layers in training mode (batch statistics, updates).")
    nodes: list[str] | None = Field(None, max_length=10_000,
                                    description="Node ids to inspect; absent: every node that makes a tensor.")


Step = Annotated[Union[CallStep, FitStep, EvaluateStep, PredictStep, InspectStep], Field(discriminator="kind")]


class Distribution(BaseModel):
    """Run the model replicated under a TensorFlow distribution strategy, in a fresh process."""

    model_config = ConfigDict(extra="forbid")
    strategy: Literal["mirrored", "multi_worker_mirrored"] = Field(
        description="`mirrored`: one machine, one replica per device; `multi_worker_mirrored`: "
        "several workers, each a process of its own (on a Ray cluster: `workers` of them, set up by "
        "Ray Train; elsewhere: configured by the `TF_CONFIG` environment variable of each).")
    devices: int = Field(1, ge=1, le=64, description="Logical CPU devices (replicas) per process.")
    workers: int = Field(1, ge=1, le=256, description="With `multi_worker_mirrored` on a Ray cluster: "
                         "the worker processes training together, each with the run's `resources`.")

    @property
    def across_workers(self) -> bool:
        """Whether the run needs several worker processes (and so a Ray cluster)."""
        return self.strategy == "multi_worker_mirrored" and self.workers > 1


class Resources(BaseModel):
    """What one process of a run needs from a cluster node; the Ray executor's scheduler honours it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    cpus: float = Field(1, gt=0, le=1024, description="CPU cores (Ray's `num_cpus`), fractions allowed.")
    gpus: float = Field(0, ge=0, le=64, description="GPUs (Ray's `num_gpus`), fractions allowed.")


class Run(BaseModel):
    """A graph, optional initial weights, and the steps to run on the one model built from it."""

    model_config = ConfigDict(extra="forbid")

    graph: Graph
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seeds every random draw of the run.")
    weights: dict[str, dict[str, ArrayIn]] = Field(
        default_factory=dict, description="Initial weights keyed by node id, then weight short name.")
    steps: list[Step] = Field(default_factory=list)
    distribution: Distribution | None = Field(
        None, description="Replicate the model across devices; null runs it on one device.")
    resources: Resources | None = Field(
        None, description="What the run (each of its workers) needs from a cluster node; used by the Ray "
        "executor, checked at submission against the cluster's nodes; ignored on one machine.")

    def array_groups(self) -> list[dict[str, ArrayIn]]:
        """Every dict of arrays of the request, in a fixed order: each layer's initial weights, then
        each step's inputs and targets."""
        return [*self.weights.values(), *(group for step in self.steps for group in step.array_groups())]


class CallResult(BaseModel):
    kind: Literal[StepKind.CALL] = StepKind.CALL
    outputs: dict[str, Any] = Field(description="Arrays keyed by Output node id.")


class FitResult(BaseModel):
    kind: Literal[StepKind.FIT] = StepKind.FIT
    history: dict[str, list[Any]] = Field(description="Keras' history: one value per epoch for each key.")
    inspections: list[Inspection] | None = Field(None, description="With `inspect_every`: one per inspected epoch.")
    tensorboard: str | None = Field(None, description="With `tensorboard`: the folder holding the logs.")


class EvaluateResult(BaseModel):
    kind: Literal[StepKind.EVALUATE] = StepKind.EVALUATE
    metrics: dict[str, Any]


class PredictResult(BaseModel):
    kind: Literal[StepKind.PREDICT] = StepKind.PREDICT
    outputs: dict[str, Any] = Field(description="Arrays keyed by Output node id.")


class InspectResult(Inspection):
    kind: Literal[StepKind.INSPECT] = StepKind.INSPECT


StepResult = Annotated[Union[CallResult, FitResult, EvaluateResult, PredictResult, InspectResult],
                       Field(discriminator="kind")]


class LayerReport(BaseModel):
    """A layer's class, config and weights; cards may add facts of their own (`fused_kernel`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    class_: str = Field(alias="class")
    config: dict[str, Any]
    weights: dict[str, Any]


class ModelReport(BaseModel):
    inputs: dict[str, list[int | None]]
    outputs: dict[str, Any]
    params: int


class RunResult(BaseModel):
    """The RUN RESULT of CONTRACT §6: every producer builds it through this model."""

    run_id: str
    status: RunStatus
    error: ErrorBody | None = None
    steps: list[StepResult] = Field(default_factory=list)
    layers: dict[str, LayerReport] = Field(default_factory=dict)
    model: ModelReport | None = None

    @classmethod
    def pending(cls, run_id: str, status: RunStatus = RunStatus.QUEUED) -> RunResult:
        """A run that has not finished yet."""
        return cls(run_id=run_id, status=status)

    @classmethod
    def stopped(cls, run_id: str, status: RunStatus, code: ErrorCode, message: str) -> RunResult:
        """A run ended by whoever ran it (cancelled, timed out, interrupted), not by its steps."""
        return cls(run_id=run_id, status=status, error=ErrorBody(code=code, message=message))

    @classmethod
    def failed(cls, run_id: str, error: NncardsError) -> RunResult:
        return cls(run_id=run_id, status=RunStatus.FAILED, error=ErrorBody.model_validate(error.body()))

    def as_json(self) -> dict[str, Any]:
        """The RUN RESULT as JSON-ready data (`class` spelled as the contract spells it)."""
        return self.model_dump(by_alias=True, mode="json")
