"""Normalization layers: the batch normalization card."""

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from nncards.card import (Constraint, Initializer, LayerCard, ParamObject, Params, PortType, Regularizer,
                          param, tensor_input)
from nncards.cards.batch_normalization_guide import GUIDE
from nncards.keras_objects import keras_attribute
from nncards.contract.errors import Problem
from nncards.layers.bn_rules import Kernel, Options, axes_of, axes_out_of_range, normalized_axes

NNCARDS_LAYER = "nncards.layers.batch_normalization.BatchNormalization"

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


Range = Annotated[list[float], Field(min_length=2, max_length=2)]
MAX_AXES = 8
Axis = Annotated[int | Annotated[list[int], Field(min_length=1, max_length=MAX_AXES)], PortType("Integer")]


class Adjustment(ParamObject):
    scale: Range | None = param(
        None, text="Scale range", help="`[low, high]` of the uniform factor drawn per feature; none: 1.",
    )
    bias: Range | None = param(
        None, text="Bias range", help="`[low, high]` of the uniform offset drawn per feature; none: 0.",
    )

    @model_validator(mode="after")
    def _ordered(self):
        for key in ("scale", "bias"):
            low_high = getattr(self, key)
            if low_high is not None and low_high[0] > low_high[1]:
                raise PydanticCustomError(
                    "param_out_of_range", "adjustment: {key} must be [low, high] with low <= high, got {value}",
                    {"key": key, "value": low_high, "expected": f"{key}[0] <= {key}[1]"},
                )
        return self


class BatchNormalizationParams(Params):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"momentum": 0.9},
        {"axis": 1, "momentum": 0.9, "epsilon": 1e-5},
        {"renorm": True, "renorm_clipping": {"rmax": 3.0, "rmin": 0.3333, "dmax": 5.0}},
        {"virtual_batch_size": 2},
        {"adjustment": {"scale": [0.9, 1.1], "bias": [-0.1, 0.1]}},
        {"trainable": False, "trainable_semantics": "v1"},
    ]})

    @field_validator("axis", mode="before")
    @classmethod
    def _integer_or_distinct_integers(cls, axis):
        """One problem for a wrong axis (rather than one per member of the union)."""
        def integer(value):
            return isinstance(value, int) and not isinstance(value, bool)

        if not (integer(axis) or (isinstance(axis, list) and 1 <= len(axis) <= MAX_AXES
                                   and all(integer(a) for a in axis))):
            raise PydanticCustomError("axis_type", f"axis must be an integer or a list of 1 to {MAX_AXES} integers")
        if isinstance(axis, list) and len(set(axis)) != len(axis):
            raise PydanticCustomError("axis_repeated", "axis must list distinct axes")
        return axis

    axis: Axis = param(
        -1, text="Axis",
        help="The features axis: each index along it gets its own mean, variance, gamma and beta. "
        "Keep -1 for channels-last data; use 1 after a channels-first convolution. Negative values "
        "count from the end; the batch axis is 0. A list of distinct axes (as in Keras 2) makes "
        "every combination of indices along them a feature, e.g. `[1, 2]` on a (batch, 4, 3) input "
        "gives 12 features; the weights then hold one value per feature in a flat list (C order "
        "over the axes in increasing order). Not with a mask.",
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
    fused: bool | None = param(
        None, text="Fused kernel",
        help="Use TensorFlow's fused batch normalization kernel, a faster implementation of the "
        "same numbers (outputs, gradients and moving statistics agree with the plain computation "
        "within float32 rounding). It serves 4-D and 5-D inputs normalized on their channel axis "
        "(1 or the last) in a float32 or 16-bit type, without renorm, synchronization, ghost "
        "batches, adjustment or a mask. Empty: pick the fastest exact route (nncards' own kernels for "
        "float32 and float16 inputs normalized on any axis but the first; where they cannot serve, the fused "
        "kernel when the features axis is the last, else XLA-compiled statistics and gradient), "
        "silently the plain computation where none serves. True: require the kernel on the input's own layout; any combination it cannot "
        "serve is an error on this parameter. False: always the plain computation of Keras 3.",
    )
    virtual_batch_size: int | None = param(
        None, text="Virtual batch size", ge=1,
        help="Ghost batch normalization: in training, split each batch into groups of this many "
        "samples and normalize every group with its own statistics. The groups are strided: with "
        "G = batch / virtual batch size groups, group j holds samples j, j + G, j + 2G, … (as in "
        "Keras 2). The moving mean and variance follow the averages of the group statistics, so the "
        "moving variance is the mean within-group variance. The training batch size must be a "
        "multiple of this value, and a fit whose batches (the last one included) are not is refused "
        "before training; inference takes any batch size. Not with adjustment or a mask.",
    )
    adjustment: Adjustment | None = param(
        None, text="Adjustment",
        help="Random per-feature adjustment in training: `{\"scale\": [low, high], \"bias\": "
        "[low, high]}`. At every training step each feature's normalized values are multiplied by a "
        "factor drawn uniformly from `scale` and shifted by an offset drawn from `bias`, before "
        "gamma and beta (a missing key means no change). Draws come from the run's seed. Inference "
        "is unaffected. Not with ghost batches.",
    )
    trainable_semantics: Literal["keras3", "v1"] = param(
        "keras3", text="Trainable semantics",
        help="What `trainable` off means. `keras3`: inference mode, as in Keras 3 and Keras 2. `v1`: "
        "as in Keras 2's V1 layer (tf.compat.v1): gamma and beta are frozen and the moving statistics "
        "no longer move, but a training step still normalizes with the batch's statistics.",
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
    guide = GUIDE
    help = (
        "Normalizes each feature to zero mean and unit variance, then scales it by `gamma` and "
        "shifts it by `beta`.\n\n"
        "In training (a `fit`, or a `call` step with `training: true`) the statistics come from the "
        "current batch, and the moving mean and variance move towards them. At inference "
        "(`predict`, `evaluate`, a `call` step without training) the moving statistics are used "
        "instead, so a sample's output does not depend on the rest of its batch.\n\n"
        "Conventions: numbers follow Keras 3. The batch variance is the biased one (divide by N), "
        "and so is the moving variance for every option, the fused kernel and ghost batches "
        "included, although Keras 2's fused kernel kept the unbiased one. `momentum` weighs the "
        "old moving value. Gamma, beta and the moving statistics always have one value per "
        "feature, so weights move between this card and stock Keras both ways.\n\n"
        "`synchronized` uses the one-pass variance E[x²] − E[x]², as Keras 3 does: on data with a "
        "large mean compared with its spread it loses precision (even on one device), so center "
        "such data first. Under a mirrored distribution, synchronized layers normalize with the "
        "statistics of the global batch; the others normalize each replica's part with its own "
        "statistics, and the moving statistics kept are those of the first replica (as in Keras 3).\n\n"
        "Keras 2's options come back: `fused`, `virtual_batch_size` (ghost batches) and "
        "`adjustment`. When one is in play, or when a faster route can serve the input, the node "
        "builds nncards' own layer (a subclass of Keras 3's, saved as `nncards>BatchNormalization`); "
        "otherwise stock `keras.layers.BatchNormalization`. A RUN RESULT reports for the node "
        "`fused_kernel` (whether TensorFlow's fused kernel ran) and `kernel`, the route its training "
        "step took: `fused` (the kernel on the input's layout), `fused_view` (on a reshaped view), "
        "`custom_op` (nncards' own C++ kernels, for inputs of any rank normalized on any axis but the "
        "first, in float32 or float16), `xla` or `composite` (Keras 3's ops). Every route gives the "
        "composite ops' numbers within float32 rounding.\n\n"
        "nncards' own kernels are compiled on the machine that uses them, once: the first use on a "
        "machine takes some 10 seconds more (a server's run workers compile them as they start, "
        "ahead of the first run), later ones load them from the user's cache folder "
        "(`~/.cache/nncards/ops`, or `$XDG_CACHE_HOME/nncards/ops`). Without a C++ compiler (`$CXX`, "
        "else `g++`), or where the build fails, the layer takes `fused_view` instead (`xla` when the "
        "features axis is not the last), and a step compiled with `jit_compile` does too (XLA "
        "cannot compile them)."
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
    def build(cls, node, params, sockets):
        arguments = cls.layer_arguments(node, params, sockets)
        shape = sockets["input"].shape if "input" in sockets else None
        if cls.uses_nncards_layer(params, shape, "mask" in sockets):
            layer = keras_attribute(NNCARDS_LAYER)(**arguments)
        else:
            options = ("fused", "virtual_batch_size", "adjustment", "trainable_semantics")
            arguments = {k: v for k, v in arguments.items() if k not in options}
            layer = keras_attribute(cls.keras)(**{**arguments, "axis": axes_of(params.axis)[0]})
        outputs = {"layer": layer}
        if "input" in sockets:
            outputs["output"] = layer(sockets["input"], **cls.call_arguments(params, sockets))
        return outputs

    inspect_input = True

    @classmethod
    def feature_axis(cls, params):
        return axes_of(params.axis)[-1]  # per-channel inspection of an axis list: along its last axis

    @classmethod
    def report(cls, params, layer):
        kernel = layer.kernel if isinstance(layer, keras_attribute(NNCARDS_LAYER)) else Kernel.COMPOSITE
        return {"fused_kernel": kernel in (Kernel.FUSED, Kernel.FUSED_VIEW), "kernel": kernel.value}

    @classmethod
    def check_fit(cls, node, params, layer, samples, batch_size):
        """A fit whose batches cannot be split into ghost batches is refused before training."""
        size = params.virtual_batch_size
        if size is None:
            return []
        batches = {min(batch_size, samples), samples % batch_size if samples > batch_size else 0} - {0}
        bad = sorted(b for b in batches if b % size)
        if not bad:
            return []
        return [Problem(code="param_invalid", node=node, port="virtual_batch_size", received=size,
                        expected=f"a divisor of the batch sizes {sorted(batches)}",
                        message=f"virtual_batch_size {size} must divide every training batch, but fitting "
                        f"{samples} samples in batches of {batch_size} gives a batch of {bad[0]}")]

    @staticmethod
    def options(params, masked: bool = False) -> Options:
        """The parameters the shared batch normalization rules look at."""
        return Options(fused=params.fused, renorm=params.renorm, synchronized=params.synchronized,
                       virtual_batch_size=params.virtual_batch_size, adjustment=params.adjustment is not None,
                       dtype=params.dtype, masked=masked, axis_list=len(axes_of(params.axis)) > 1)

    @classmethod
    def uses_nncards_layer(cls, params, shape, masked: bool) -> bool:
        """nncards' layer when a Keras 2 option is set or a faster kernel can serve the input."""
        options = cls.options(params, masked)
        if params.fused is not None or params.virtual_batch_size is not None or params.adjustment is not None \
                or params.trainable_semantics != "keras3" or options.axis_list:
            return True
        return shape is not None and \
            options.kernel(len(shape), normalized_axes(params.axis, len(shape))[0]) is not Kernel.COMPOSITE

    @classmethod
    def check(cls, node, params, input_shapes):
        problems = cls._option_problems(node, params, input_shapes)
        shape = input_shapes.get("input")
        if shape is None:
            return problems
        rank = len(shape)
        outside = axes_out_of_range(params.axis, rank)
        if outside:
            return problems + [Problem(
                code="param_out_of_range", node=node, port="axis", received=params.axis,
                expected=f"{-rank} <= axis < {rank}" + (" for every axis" if isinstance(params.axis, list) else ""),
                message=f"axis must be between {-rank} and {rank - 1} for an input of rank {rank} "
                f"(shape {shape}), got {params.axis}",
            )]
        unknown = [a for a in axes_of(params.axis) if shape[a] is None]
        if unknown:
            problems.append(Problem(
                code="shape_mismatch", node=node, port="input", received=shape,
                message=f"the features axis {unknown[0]} of the input must have a known size, got shape {shape}",
            ))
        mask = input_shapes.get("mask")
        if mask is not None and len(mask) != rank - 1:
            problems.append(Problem(
                code="shape_mismatch", node=node, port="mask", received=mask,
                expected=f"a mask of rank {rank - 1}",
                message=f"the mask must have one dimension fewer than the input (rank {rank}), got shape {mask}",
            ))
        return problems

    @classmethod
    def _option_problems(cls, node, params, input_shapes) -> list[Problem]:
        """The shared rules on combining `fused`, `virtual_batch_size` and `adjustment`."""
        shape = input_shapes.get("input")
        known = shape is not None and not axes_out_of_range(params.axis, len(shape))
        conflicts = cls.options(params, "mask" in input_shapes).conflicts(
            *((len(shape), normalized_axes(params.axis, len(shape))) if known else ()))
        return [Problem(code="param_invalid", node=node, port=c.port, expected=c.expected, message=c.message,
                        received=params.adjustment.model_dump() if c.port == "adjustment" else getattr(params, c.port))
                for c in conflicts]


CARDS = [BatchNormalization]
