"""Merge layers: cards that combine several tensors, fed through one variadic `inputs` port."""

from typing import ClassVar

from nncards.card import param, tensor_input
from nncards.contract.errors import Problem

from nncards.card import LAYER, KerasLayerCard, arguments, flag

LAYER_ONLY = arguments("MergeParams", [{}], **LAYER)
ELEMENTWISE = "The tensors must have the same shape, or shapes that broadcast to one another."


class TensorListCard(KerasLayerCard):
    """A Keras layer called on the list of tensors wired to `inputs`, in edge order."""

    input_count: ClassVar[tuple[int, int | None]] = (2, None)  # fewest and most tensors

    @classmethod
    def check(cls, node, params, input_shapes):
        shapes = input_shapes.get("inputs", [])
        fewest, most = cls.input_count
        if len(shapes) >= fewest and (most is None or len(shapes) <= most):
            return []
        expected = f"exactly {most}" if fewest == most else f"at least {fewest}" if most is None else f"{fewest} to {most}"
        return [Problem(code="missing_required_input" if len(shapes) < fewest else "shape_mismatch",
                        node=node, port="inputs", expected=f"{expected} tensors", received=shapes,
                        message=f"{cls.id} combines {expected} tensors, got {len(shapes)}")]

    @classmethod
    def build(cls, node, params, sockets):
        layer = cls.make_layer(node, params, sockets)
        return {"layer": layer, "output": layer(sockets["inputs"], **cls.call_arguments(params, sockets))}


class MergeCard(TensorListCard):
    """A Keras merge layer: combines the tensors wired to `inputs` into one."""

    id_prefix = "mergeLayer_"
    path = ("Layers", "Merging")
    Params = LAYER_ONLY
    sockets = (tensor_input(
        "inputs", "Inputs", "The tensors to combine, in the order of their edges in the graph.",
        required=True, multiplicity="n"),)


def elementwise(keras_class: str, does: str, input_count: tuple[int, int | None] = (2, None)) -> type[MergeCard]:
    """The card of a merge layer that combines same-shaped tensors position by position."""
    return type(keras_class, (MergeCard,), {
        "__module__": __name__, "title": keras_class, "help": f"{does} {ELEMENTWISE}", "input_count": input_count,
    })


Add = elementwise("Add", "Adds the tensors element by element.")
Subtract = elementwise("Subtract", "Subtracts the second tensor from the first, element by element.", (2, 2))
Multiply = elementwise("Multiply", "Multiplies the tensors element by element, e.g. to gate one tensor by another.")
Average = elementwise("Average", "Averages the tensors element by element.")
Maximum = elementwise("Maximum", "Keeps the largest of the tensors' values at each position.")
Minimum = elementwise("Minimum", "Keeps the smallest of the tensors' values at each position.")


class Concatenate(MergeCard):
    title = "Concatenate"
    help = "Joins the tensors end to end along one axis; all other axes must agree in size."
    Params = arguments(
        "ConcatenateParams", [{}, {"axis": 1}],
        axis=(int, param(-1, text="Axis", help="The axis along which the tensors are joined; -1 is the last.")),
        **LAYER,
    )


class Dot(MergeCard):
    title = "Dot product"
    help = (
        "Dot product of two tensors, per sample: multiplies them along the given axes and sums, "
        "e.g. the similarity of two embeddings, or attention scores between two sequences."
    )
    Params = arguments(
        "DotParams", [{"axes": [1]}, {"axes": [1], "normalize": True}],
        axes=(list[int], param(
            ..., text="Axes", min_length=1, max_length=2,
            help="The axis to sum over: one number for both tensors, or `[axis of the first, axis of "
            "the second]`. Axis 0 would be the batch axis, so counting starts at 1 (negatives from the end).")),
        **flag("normalize", False, "Normalize",
               "L2-normalize both tensors along the axes first, so the result is the cosine similarity."),
        **LAYER,
    )
    input_count = (2, 2)

    @classmethod
    def layer_arguments(cls, node, params, sockets):
        arguments = super().layer_arguments(node, params, sockets)
        axes = arguments["axes"]
        arguments["axes"] = axes[0] if len(axes) == 1 else tuple(axes)
        return arguments


CARDS = [Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot]
