"""The rules of batch normalization's Keras 2 options, in one place for the card and the layer.

The card checks them at validation (each conflict becomes a `param_invalid` on its port) and the
layer obeys them at construction and build (each conflict a `ValueError`). This module imports
nothing heavy: the card module reads it while serving the catalogue, without TensorFlow.
Semantics: BN_SEMANTICS.md §1 and §4.1–4.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# (rank, non-negative channel axis) → the data format TensorFlow's fused kernel understands.
FUSED_DATA_FORMATS = {(4, 3): "NHWC", (4, 1): "NCHW", (5, 4): "NDHWC", (5, 1): "NCDHW"}
FUSED_COMPUTE_DTYPES = ("float32", "float16", "bfloat16")
CUSTOM_OP_COMPUTE_DTYPES = ("float32", "float16")
ADJUSTMENT_KEYS = ("scale", "bias")
KERNEL_NEEDS = ("it needs a 4-D or 5-D input normalized on one axis, 1 or the last, in a float32 or 16-bit "
                "type, without renorm, synchronized, virtual_batch_size, adjustment or a mask")


class Kernel(StrEnum):
    """How a layer's training step runs; all give the composite ops' numbers (within float32
    rounding). Chosen by measurement on CPU (benchmarks/batchnorm.py): nncards' own op on
    float32 and float16 inputs normalized on any axis but the batch's (on NHWC faster than
    TensorFlow's fused kernel, on NDHWC some four times as fast, on NCHW faster than XLA), the
    fused kernel where `fused` asks for it or the op has no bfloat16 form, XLA for bfloat16
    inputs whose channels are not the last axis, and where the op cannot serve them."""

    FUSED = "fused"  # TensorFlow's fused kernel on the input's own 4-D/5-D layout
    FUSED_VIEW = "fused_view"  # the fused kernel on an (M, 1, 1, C) view of a channels-last input
    CUSTOM_OP = "custom_op"  # nncards' C++ op (layers/batch_norm_op.cc) where it builds, else `op_fallback`
    XLA = "xla"  # XLA-compiled statistics, normalization and hand-written backward pass
    COMPOSITE = "composite"  # Keras 3's composite ops, and nncards' paths for Keras 2's options


TRAINABLE_SEMANTICS = ("keras3", "v1")


def axes_of(axis: int | list[int] | tuple[int, ...]) -> list[int]:
    """The normalized axes as a list, whether `axis` is one integer or several."""
    return list(axis) if isinstance(axis, (list, tuple)) else [axis]


def axes_out_of_range(axis, rank: int) -> list[int]:
    """The axes that are no axis of an input of this rank (negative ones count from the end)."""
    return [a for a in axes_of(axis) if not -rank <= a < rank]


def normalized_axes(axis, rank: int) -> tuple[int, ...]:
    """The axes as sorted non-negative indices (all in range; see `axes_out_of_range`)."""
    return tuple(sorted(a % rank for a in axes_of(axis)))


def compute_dtype(dtype: str) -> str:
    """The type a dtype policy name computes in (`mixed_float16` → `float16`)."""
    return dtype.removeprefix("mixed_")


def op_fallback(rank: int, axis: int) -> Kernel:
    """The kernel of a training step nncards' op cannot serve (not built here, or in a step XLA
    compiles), and of the op's layers in inference: the fused kernel on a view of a
    channels-last input, XLA for the others."""
    return Kernel.FUSED_VIEW if axis == rank - 1 else Kernel.XLA


@dataclass(frozen=True)
class Conflict:
    """A combination of options that cannot run, blamed on one option (a card port and a
    constructor argument of the same name)."""

    port: str
    message: str
    expected: str


@dataclass(frozen=True)
class Options:
    """What the rules look at: the options of one batch normalization layer, and whether a mask
    reaches it (known to the card at validation, to the layer at call time)."""

    fused: bool | None = None
    renorm: bool = False
    synchronized: bool = False
    virtual_batch_size: int | None = None
    adjustment: bool = False
    dtype: str = "float32"
    masked: bool = False
    axis_list: bool = False  # several axes normalized together (a one-item list is one axis)

    def kernel_blockers(self) -> list[str]:
        """The options that keep the fused kernel away whatever the input's layout."""
        used = {"renorm": self.renorm, "synchronized": self.synchronized,
                "virtual_batch_size": self.virtual_batch_size is not None, "adjustment": self.adjustment,
                f"dtype {self.dtype}": compute_dtype(self.dtype) not in FUSED_COMPUTE_DTYPES,
                "a mask": self.masked}
        return [name for name, blocks in used.items() if blocks]

    def kernel(self, rank: int, axis: int) -> Kernel:
        """The kernel for an input of this rank normalized on this one (non-negative) axis.
        `fused` true takes the fused kernel on the input's layout; false keeps the composite ops.
        (An axis list runs on a view of the input whose last axis holds every feature.)"""
        if self.fused is False or self.kernel_blockers() or rank < 2 or axis == 0:
            return Kernel.COMPOSITE
        channels_last = axis == rank - 1
        if not self.fused and compute_dtype(self.dtype) in CUSTOM_OP_COMPUTE_DTYPES:
            return Kernel.CUSTOM_OP
        if (rank, axis) in FUSED_DATA_FORMATS and (self.fused or channels_last):
            return Kernel.FUSED
        if self.fused:  # a layout the kernel cannot serve: one of `conflicts`
            return Kernel.COMPOSITE
        return op_fallback(rank, axis)

    def conflicts(self, rank: int | None = None, axes: tuple[int, ...] | None = None) -> list[Conflict]:
        """Every combination that cannot run; `rank` and the `normalized_axes` when the input is
        known (without them, only the rules that do not depend on it)."""
        conflicts = []
        if axes is not None and len(set(axes)) != len(axes):
            conflicts.append(Conflict("axis", f"axis names the same axis twice: {list(axes)} for an input of "
                                      f"rank {rank}", "distinct axes"))
        if self.axis_list and self.masked:
            conflicts.append(Conflict("axis", "an axis list cannot be combined with a mask (Keras 3 masks "
                                      "expand along the last axis only)", "one axis with a mask"))
        if self.virtual_batch_size is not None:
            if self.adjustment:
                conflicts.append(Conflict("virtual_batch_size", "virtual_batch_size and adjustment cannot be "
                                          "used together", "null when adjustment is set"))
            if self.masked:
                conflicts.append(Conflict("virtual_batch_size", "virtual_batch_size cannot be combined with a "
                                          "mask", "null with a mask"))
            if axes is not None and 0 in axes:
                conflicts.append(Conflict("virtual_batch_size", "virtual_batch_size cannot be used when "
                                          "normalizing along the batch axis (axis 0)", "null with axis 0"))
        if self.fused:
            blockers = self.kernel_blockers() + (["an axis list"] if self.axis_list else [])
            if rank is not None and axes is not None and not self.axis_list and \
                    (rank, axes[0]) not in FUSED_DATA_FORMATS:
                blockers.append(f"axis {axes[0]} of a rank-{rank} input")
            if blockers:
                conflicts.append(Conflict("fused", f"fused is true, but the fused kernel cannot serve "
                                          f"{', '.join(blockers)}; {KERNEL_NEEDS}", "null or false"))
        return conflicts
