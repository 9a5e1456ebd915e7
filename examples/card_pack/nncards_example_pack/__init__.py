"""An example card pack: one card wrapping `keras.layers.Rescaling`.

nncards finds it through the `nncards.cards` entry point of pyproject.toml,
which names `cards`: a callable returning the pack's card classes. The card
is declared with `nncards.card`, the toolkit nncards' own cards use, and like
them this module imports no TensorFlow or Keras: the card names its Keras
class by path.
"""

from nncards.card import LAYER, KerasLayerCard, arguments, param, tensor_input


class Rescaling(KerasLayerCard):
    # The id is the prefix and the class name, "example_Rescaling": a prefix
    # of the pack's own keeps its ids apart from the built-in "layer_..." ones
    # (an id that is already taken is refused).
    id_prefix = "example_"
    title = "Rescaling layer (example pack)"
    path = ("Layers", "Preprocessing")
    help = ("Computes `input * scale + offset` element by element, for example "
            "to bring pixel values from 0–255 into 0–1 with a scale of 1/255.")
    Params = arguments(
        "RescalingParams", [{"scale": 0.5, "offset": 1.0}],
        scale=(float, param(
            1.0, text="Scale", help="Factor every value is multiplied by.")),
        offset=(float, param(
            0.0, text="Offset", help="Value added after the multiplication.")),
        **LAYER,
    )
    sockets = (tensor_input(help="The tensor to rescale."),)


def cards():
    return [Rescaling]
