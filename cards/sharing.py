"""Weight sharing: the `apply_layer` card applies an existing layer instance to another tensor."""

from nncards.card import Card, Port, layer_input, tensor_input
from nncards.contract.errors import NncardsError, Problem


def _shape(tensor) -> list:
    return [None if d is None else int(d) for d in tensor.shape]


def built_for(layer) -> list | None:
    """The input shape of the layer's first application, if it has been applied already."""
    try:
        first = layer.input
    except (AttributeError, ValueError):  # never applied in a graph yet
        return None
    return [_shape(t) for t in first] if isinstance(first, (list, tuple)) else _shape(first)


class ApplyLayer(Card):
    id = "apply_layer"
    title = "Apply layer again"
    path = ("Layers", "Sharing")
    help = (
        "Applies an existing layer to another tensor with the same weights: a Siamese network's "
        "twin branches, a shared embedding for two inputs, one decoder for several codes. Training "
        "updates the one set of weights from every place it is applied. The layer is reported once "
        "in a run result, under the node that made it. The new input must fit the shape the layer "
        "was first built for."
    )
    sockets = (
        layer_input(help="The layer to apply again, from the `layer` output of the card that made it."),
        tensor_input(help="The tensor to apply the layer to.", required=True),
    )
    outputs = (Port("output", "NeuralNetworkTensor", "Output", "The shared layer's result on this input."),)
    example_layers = {"layer": ("layer_Dense", {"units": 2})}
    applies_wired_layer = True

    @classmethod
    def build(cls, node, params, sockets):
        layer, tensor = sockets["layer"], sockets["input"]
        expected = built_for(layer)
        try:
            return {"output": layer(tensor)}
        except (ValueError, TypeError) as exc:
            received = _shape(tensor)
            reason = str(exc).strip().splitlines()[0]
            where = f"was built for inputs of shape {expected}" if expected else "cannot take it"
            problem = Problem(
                code="shape_mismatch", node=node, port="input", expected=expected, received=received,
                message=f"the shared layer {layer.name!r} {where}, but this input has shape {received}: {reason}")
        raise NncardsError("graph_invalid", problem.message, [problem])


CARDS = [ApplyLayer]
