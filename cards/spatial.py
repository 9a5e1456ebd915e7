"""What the 1-D, 2-D and 3-D forms of a spatial layer share, so one declaration serves every rank.

Keras has most spatial layers three times (Conv1D/2D/3D, MaxPooling1D/2D/3D, Cropping1D/2D/3D,
…) with the same arguments, one integer per spatial axis. A family module declares its arguments
once as a function of the rank and makes its cards with `ranked`; this module knows what differs
between the ranks: the kind of data, its axes and a small example input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, field_validator

from nncards.card import Argument, param


@dataclass(frozen=True)
class Rank:
    dims: int
    data: str  # what a sample is, with its channels-last axes
    patterns: str  # what local windows over such data find
    example_input_shape: tuple[int, ...]

    def each(self, value: Any) -> Any:
        """One value per spatial axis, as the cards take it: a number in 1-D, a list otherwise."""
        return value if self.dims == 1 else [value] * self.dims


RANKS = {
    1: Rank(1, "a sequence (`batch, steps, channels`)", "local patterns in time series, audio or text", (8, 3)),
    2: Rank(2, "an image (`batch, rows, columns, channels`)", "edges, textures and shapes in images", (8, 8, 3)),
    3: Rank(3, "a volume such as a video clip or a 3-D scan (`batch, depth, rows, columns, channels`)",
            "motion in video and structures in 3-D scans", (6, 6, 6, 2)),
}


def ranked(base: type, keras_class: str, dims: int, title: str, help: str, params: type, **attributes) -> type:
    """The card of `keras_class` for data of `dims` spatial axes (its example input included);
    `dims` stays on the card for its own use."""
    return type(keras_class, (base,), {
        "__module__": base.__module__, "title": title, "help": help, "Params": params, "dims": dims,
        "example_input_shape": RANKS[dims].example_input_shape, **attributes,
    })


# -- margins: the per-side amounts of padding and cropping ----------------------------------------

AXIS_NAMES = {1: "steps", 2: "rows, columns", 3: "depth, rows, columns"}
SIDE_NAMES = {1: "start, end", 2: "top, bottom, left, right", 3: "front, back, top, bottom, left, right"}


def margins(field: str, dims: int, default: list[int], text: str, what: str) -> dict[str, Argument]:
    """An amount per spatial axis (both sides alike) or per side of each axis, as a flat list."""

    def one_or_two_per_axis(cls, value):
        if len(value) not in (dims, 2 * dims):
            raise ValueError(f"{field} takes {dims} or {2 * dims} numbers, got {len(value)}")
        return value

    return {field: (list[Annotated[int, Field(ge=0)]], param(
        default, text=text, min_length=dims, max_length=2 * dims,
        help=f"{what}: `[{AXIS_NAMES[dims]}]` on both sides alike, or `[{SIDE_NAMES[dims]}]` side by side."))}, {
        f"_{field}_per_axis": field_validator(field)(one_or_two_per_axis)}


def keras_margins(value: list[int], dims: int) -> Any:
    """The flat list of a margin as Keras takes it: an int or pair in 1-D, pairs per axis above."""
    if len(value) == dims:
        return value[0] if dims == 1 else tuple(value)
    pairs = tuple(tuple(value[i:i + 2]) for i in range(0, len(value), 2))
    return pairs[0] if dims == 1 else pairs


def flat_margins(value: Any, dims: int) -> Any:
    """The reverse of `keras_margins`: a margin as Keras writes it (an int, a pair, pairs per
    axis), as the card's flat list, one number per axis when both sides agree."""
    if isinstance(value, int):
        return [value] * dims
    pairs = [value] if dims == 1 and all(isinstance(v, int) for v in value) and len(value) == 2 else value
    if not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in pairs):
        return list(value)
    if all(first == second for first, second in pairs):
        return [first for first, _ in pairs]
    return [side for pair in pairs for side in pair]
