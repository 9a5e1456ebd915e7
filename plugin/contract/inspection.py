"""What an `inspect` step (or a fit's `inspect_every`) reports of the tensors inside a model.

Statistics only, never the tensors: per channel (the card's feature axis) and one fixed-bin
histogram of the whole tensor. Non-finite values are counted apart and left out of the others.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

HISTOGRAM_BINS = 32


class ChannelStatistics(BaseModel):
    """One value per channel along the tensor's feature axis (a single channel for a rank-1 tensor)."""

    mean: list[Any]
    std: list[Any] = Field(description="Population standard deviation (divided by the count).")
    min: list[Any]
    max: list[Any]
    zeros: list[float] = Field(description="Fraction of the channel's values that are exactly zero.")
    nonfinite: list[float] = Field(description="Fraction of the channel's values that are NaN or infinite.")


class Histogram(BaseModel):
    edges: list[float] = Field(description=f"{HISTOGRAM_BINS + 1} bin edges from the tensor's finite minimum to its maximum.")
    counts: list[int] = Field(description=f"{HISTOGRAM_BINS} counts; the last bin includes its right edge.")


class TensorStatistics(BaseModel):
    shape: list[int] = Field(description="The tensor's shape in this pass, batch first.")
    axis: int | None = Field(description="The feature axis the channels are taken along; null for one channel.")
    channels: ChannelStatistics
    histogram: Histogram


class NodeInspection(BaseModel):
    outputs: dict[str, TensorStatistics] = Field(description="Statistics of each tensor output port.")
    input: TensorStatistics | None = Field(
        None, description="For batch normalization: the tensor entering the card, to compare with its output.")
    batch_mean: list[Any] | None = Field(None, description="For batch normalization: this batch's mean per feature.")
    batch_variance: list[Any] | None = Field(
        None, description="For batch normalization: this batch's (biased) variance per feature.")
    moving_mean: list[Any] | None = Field(None, description="For batch normalization: the layer's moving mean after the pass.")
    moving_variance: list[Any] | None = Field(None, description="For batch normalization: its moving variance after the pass.")
    gamma: list[Any] | None = Field(
        None, description="For batch normalization: its scale after the pass (null without `scale`).")
    beta: list[Any] | None = Field(
        None, description="For batch normalization: its offset after the pass, where a training pass centres "
        "the output's per-channel means (null without `center`).")


class Inspection(BaseModel):
    """The statistics of one forward pass, keyed by node id."""

    epoch: int | None = Field(None, description="During a fit: the epoch after which the pass ran.")
    training: bool = Field(description="The pass ran in training mode (batch statistics) rather than inference "
                           "mode (moving statistics).")
    nodes: dict[str, NodeInspection]
