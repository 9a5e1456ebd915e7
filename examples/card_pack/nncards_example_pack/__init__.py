"""An example card pack: one card wrapping `keras.layers.Rescaling`.

nncards finds it through the `nncards.cards` entry point declared in pyproject.toml, which
names `cards`: a callable returning the pack's card classes. Like nncards' own cards, this
module imports no TensorFlow or Keras: the card names its Keras class by path.
"""

from pydantic import ConfigDict

from nncards.card import LayerCard, Params, param, tensor_input


class RescalingParams(Params):
    model_config = ConfigDict(json_schema_extra={"examples": [{"scale": 0.5, "offset": 1.0}]})

    scale: float = param(1.0, text="Scale", help="Factor every value is multiplied by.")
    offset: float = param(0.0, text="Offset", help="Value added after the multiplication.")
    name: str | None = param(
        None, text="Name", help="Name of the Keras layer; the node id when left empty.", min_length=1, max_length=64,
    )


class Rescaling(LayerCard):
    id = "layer_Rescaling"
    title = "Rescaling layer"
    path = ("Layers", "Preprocessing")
    keras = "keras.layers.Rescaling"
    help = ("Computes `input * scale + offset` element by element, for example to bring pixel values "
            "from 0–255 into 0–1 with a scale of 1/255.")
    Params = RescalingParams
    sockets = (tensor_input(help="The tensor to rescale."),)


def cards():
    return [Rescaling]
