"""Normalization layers: the batch normalization card."""

from typing import Literal

from pydantic import ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from nncards.card import (Constraint, Initializer, LayerCard, ParamObject, Params, Regularizer,
                          param, tensor_input)
from nncards.problems import Problem

DTYPES = Literal["float32", "float16", "bfloat16", "float64", "mixed_float16", "mixed_bfloat16"]


class RenormClipping(ParamObject):
    rmax: float | None = param(None, text="r max", help="Upper bound of the correction `r`.")
    rmin: float | None = param(None, text="r min", help="Lower bound of the correction `r`.")
    dmax: float | None = param(None, text="d max", help="Bound of the correction `d` in both directions.", ge=0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.rmin is not None and self.rmax is not None and self.rmin > self.rmax:
            raise PydanticCustomError(
                "param_out_of_range", "renorm_clipping: rmin must not exceed rmax, got rmin={rmin} > rmax={rmax}",
                {"rmin": self.rmin, "rmax": self.rmax, "expected": "rmin <= rmax"},
            )
        return self


class BatchNormalizationParams(Params):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"momentum": 0.9},
        {"axis": 1, "momentum": 0.9, "epsilon": 1e-5},
        {"renorm": True, "renorm_clipping": {"rmax": 3.0, "rmin": 0.3333, "dmax": 5.0}},
    ]})

    axis: int = param(
        -1, text="Axis",
        help="The features axis: each index along it gets its own mean, variance, gamma and beta. "
        "Keep -1 for channels-last data; use 1 after a channels-first convolution. Negative values "
        "count from the end; the batch axis is 0.",
    )
    momentum: float = param(
        0.99, text="Momentum", ge=0, le=1,
        help="Weight of the old value when the moving mean and variance are updated: "
        "`moving = momentum * moving + (1 - momentum) * batch`. Lower values follow recent batches "
        "faster. (PyTorch's momentum is one minus this.)",
    )
    epsilon: float = param(
        0.001, text="Epsilon", gt=0,
        help="Small positive number added to the variance before its square root, so that a "
        "feature with zero variance does not divide by zero.",
    )
    center: bool = param(
        True, text="Center", help="Learn an offset `beta` added after normalization. Off: no beta weight.",
    )
    scale: bool = param(
        True, text="Scale",
        help="Learn a factor `gamma` applied after normalization. Off: no gamma weight; reasonable "
        "when the next layer is linear and can do the scaling itself.",
    )
    beta_initializer: Initializer = param("zeros", text="Beta initializer", help="Starting values of `beta`.")
    gamma_initializer: Initializer = param("ones", text="Gamma initializer", help="Starting values of `gamma`.")
    moving_mean_initializer: Initializer = param(
        "zeros", text="Moving mean initializer", help="Starting values of the moving mean used at inference.",
    )
    moving_variance_initializer: Initializer = param(
        "ones", text="Moving variance initializer",
        help="Starting values of the moving variance used at inference.",
    )
    beta_regularizer: Regularizer = param(None, text="Beta regularizer", help="Penalty on `beta` added to the loss.")
    gamma_regularizer: Regularizer = param(None, text="Gamma regularizer", help="Penalty on `gamma` added to the loss.")
    beta_constraint: Constraint = param(None, text="Beta constraint", help="Projection applied to `beta` after each update.")
    gamma_constraint: Constraint = param(None, text="Gamma constraint", help="Projection applied to `gamma` after each update.")
    renorm: bool = param(
        False, text="Batch renormalization",
        help="Use batch renormalization: in training, correct the batch statistics towards moving "
        "ones by factors `r` and `d`, so that training and inference agree better with small or "
        "non-i.i.d. batches.",
    )
    renorm_clipping: RenormClipping | None = param(
        None, text="Renorm clipping",
        help="Bounds on the renormalization corrections: `r` is kept in `[rmin, rmax]` and `d` in "
        "`[-dmax, dmax]`. A missing key leaves that side unbounded. Used only with renorm.",
    )
    renorm_momentum: float = param(
        0.99, text="Renorm momentum", ge=0, le=1,
        help="Momentum of the moving mean and standard deviation that renormalization corrects towards.",
    )
    synchronized: bool = param(
        False, text="Synchronized",
        help="Under a distribution strategy, compute the batch statistics over all replicas instead "
        "of per replica. It uses the one-pass formula E[x²] − E[x]², which loses precision on data "
        "with a large mean, even on one device.",
    )
    trainable: bool = param(
        True, text="Trainable",
        help="Off: the layer always runs in inference mode, with the moving statistics, and nothing "
        "in it is updated, even during fit. This is how a batch normalization layer is frozen for "
        "fine-tuning.",
    )
    name: str | None = param(
        None, text="Name", help="Name of the Keras layer; the node id when left empty.", min_length=1, max_length=64,
    )
    dtype: DTYPES = param(
        "float32", text="Data type",
        help="Computation and variable type. The mixed policies compute in 16 bits and keep the "
        "variables in float32.",
    )


class BatchNormalization(LayerCard):
    id = "layer_BatchNormalization"
    title = "Batch normalization layer"
    path = ("Layers", "Normalization")
    keras = "keras.layers.BatchNormalization"
    help = (
        "Normalizes each feature to zero mean and unit variance, then scales it by `gamma` and "
        "shifts it by `beta`.\n\n"
        "In training (a `fit`, or a `call` step with `training: true`) the statistics come from the "
        "current batch, and the moving mean and variance move towards them. At inference "
        "(`predict`, `evaluate`, a `call` step without training) the moving statistics are used "
        "instead, so a sample's output does not depend on the rest of its batch.\n\n"
        "The variance is the biased (divide by N) batch variance, as in Keras 3."
    )
    Params = BatchNormalizationParams
    sockets = (
        tensor_input(help="The tensor to normalize. Without it the card only produces the layer."),
        tensor_input(
            "mask", "Mask",
            "Optional boolean tensor with one dimension fewer than the input. In training, positions "
            "where it is false are left out of the batch statistics (they are still normalized). "
            "Masks from upstream masking layers arrive without this socket.",
        ),
    )
    weight_ranks = {
        "beta_initializer": 1, "gamma_initializer": 1,
        "moving_mean_initializer": 1, "moving_variance_initializer": 1,
    }

    @classmethod
    def check(cls, node, params, input_shapes):
        shape = input_shapes.get("input")
        if shape is None:
            return []
        rank = len(shape)
        if not -rank <= params.axis < rank:
            return [Problem(
                code="param_out_of_range", node=node, port="axis", received=params.axis,
                expected=f"{-rank} <= axis < {rank}",
                message=f"axis must be between {-rank} and {rank - 1} for an input of rank {rank} "
                f"(shape {shape}), got {params.axis}",
            )]
        problems = []
        if shape[params.axis] is None:
            problems.append(Problem(
                code="shape_mismatch", node=node, port="input", received=shape,
                message=f"the features axis {params.axis} of the input must have a known size, got shape {shape}",
            ))
        mask = input_shapes.get("mask")
        if mask is not None and len(mask) != rank - 1:
            problems.append(Problem(
                code="shape_mismatch", node=node, port="mask", received=mask,
                expected=f"a mask of rank {rank - 1}",
                message=f"the mask must have one dimension fewer than the input (rank {rank}), got shape {mask}",
            ))
        return problems


CARDS = [BatchNormalization]
