"""Initializer cards: the rule that gives a weight its starting values."""

from typing import Literal

from pydantic import ConfigDict

from nncards.card import InstanceCard, Params, Port, param

OUTPUT = (Port("initializer", "NeuralNetworkInitializer", "Initializer",
               "The initializer, to wire into a layer's initializer socket."),)
PATH = ("Initializers",)


def seed_param():
    return param(
        None, text="Seed", ge=0, le=2**31 - 1,
        help="Makes the drawn values reproducible on their own. Left empty, they follow the run's seed.",
    )


class SeededParams(Params):
    model_config = ConfigDict(json_schema_extra={"examples": [{"seed": 1}]})
    seed: int | None = seed_param()


class InitializerCard(InstanceCard):
    path = PATH
    outputs = OUTPUT


class Constant(InitializerCard):
    id = "initializer_Constant"
    title = "Constant initializer"
    keras = "keras.initializers.Constant"
    help = "Fills the weight with one value everywhere."

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"value": 2.0}]})
        value: float = param(0.0, text="Value", help="The value every element starts with.")


class Zeros(InitializerCard):
    id = "initializer_Zeros"
    title = "Zeros initializer"
    keras = "keras.initializers.Zeros"
    help = "Starts every element of the weight at 0."


class Ones(InitializerCard):
    id = "initializer_Ones"
    title = "Ones initializer"
    keras = "keras.initializers.Ones"
    help = "Starts every element of the weight at 1."


def _fan_scaled(name: str, rule: str, distribution: str) -> type[InitializerCard]:
    return type(name, (InitializerCard,), {
        "__module__": __name__,
        "id": f"initializer_{name}",
        "title": f"{name.replace('Normal', ' normal').replace('Uniform', ' uniform')} initializer",
        "keras": f"keras.initializers.{name}",
        "help": f"Draws from a {distribution} whose spread is set by {rule}, so that signals keep "
        "their scale through the layer.",
        "Params": SeededParams,
    })


GlorotNormal = _fan_scaled("GlorotNormal", "the average of the fan-in and fan-out (Glorot & Bengio)",
                           "truncated normal distribution")
GlorotUniform = _fan_scaled("GlorotUniform", "the average of the fan-in and fan-out (Glorot & Bengio)",
                            "uniform distribution")
HeNormal = _fan_scaled("HeNormal", "the fan-in, suited to ReLU layers (He et al.)", "truncated normal distribution")
HeUniform = _fan_scaled("HeUniform", "the fan-in, suited to ReLU layers (He et al.)", "uniform distribution")
LecunNormal = _fan_scaled("LecunNormal", "the fan-in, suited to SELU layers (LeCun)", "truncated normal distribution")
LecunUniform = _fan_scaled("LecunUniform", "the fan-in, suited to SELU layers (LeCun)", "uniform distribution")


class Identity(InitializerCard):
    id = "initializer_Identity"
    title = "Identity initializer"
    keras = "keras.initializers.Identity"
    help = "Starts a 2-D weight as a (scaled) identity matrix. It cannot serve 1-D weights such as a bias or gamma."
    min_weight_rank = 2

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"gain": 1.0}]})
        gain: float = param(1.0, text="Gain", help="Factor applied to the identity matrix.")


class Orthogonal(InitializerCard):
    id = "initializer_Orthogonal"
    title = "Orthogonal initializer"
    keras = "keras.initializers.Orthogonal"
    help = ("Starts the weight as a random orthogonal matrix (the trailing dimensions flattened), which "
            "keeps the norm of signals in deep or recurrent networks. Needs a weight of rank 2 or more.")
    min_weight_rank = 2

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"gain": 1.0, "seed": 1}]})
        gain: float = param(1.0, text="Gain", help="Factor applied to the orthogonal matrix.")
        seed: int | None = seed_param()


class RandomNormal(InitializerCard):
    id = "initializer_RandomNormal"
    title = "Random normal initializer"
    keras = "keras.initializers.RandomNormal"
    help = "Draws every element from a normal distribution."

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"mean": 0.0, "stddev": 0.1, "seed": 1}]})
        mean: float = param(0.0, text="Mean", help="Centre of the distribution.")
        stddev: float = param(0.05, text="Standard deviation", help="Spread of the distribution.", ge=0)
        seed: int | None = seed_param()


class TruncatedNormal(InitializerCard):
    id = "initializer_TruncatedNormal"
    title = "Truncated normal initializer"
    keras = "keras.initializers.TruncatedNormal"
    help = ("Draws from a normal distribution, drawing again any value more than two standard "
            "deviations from the mean.")
    Params = RandomNormal.Params


class RandomUniform(InitializerCard):
    id = "initializer_RandomUniform"
    title = "Random uniform initializer"
    keras = "keras.initializers.RandomUniform"
    help = "Draws every element uniformly between a lower and an upper bound."

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"minval": -0.1, "maxval": 0.1, "seed": 1}]})
        minval: float = param(-0.05, text="Lower bound", help="Smallest value that can be drawn.")
        maxval: float = param(0.05, text="Upper bound", help="Largest value (excluded) that can be drawn.")
        seed: int | None = seed_param()


class VarianceScaling(InitializerCard):
    id = "initializer_VarianceScaling"
    title = "Variance scaling initializer"
    keras = "keras.initializers.VarianceScaling"
    help = ("The general rule behind Glorot, He and LeCun: draws with a variance of `scale / n`, "
            "where `n` is the fan-in, the fan-out or their average.")

    class Params(Params):
        model_config = ConfigDict(json_schema_extra={"examples": [{"scale": 2.0, "mode": "fan_in", "seed": 1}]})
        scale: float = param(1.0, text="Scale", help="Numerator of the variance.", gt=0)
        mode: Literal["fan_in", "fan_out", "fan_avg"] = param(
            "fan_in", text="Mode", help="Which count `n` divides the scale.")
        distribution: Literal["truncated_normal", "untruncated_normal", "uniform"] = param(
            "truncated_normal", text="Distribution", help="Shape of the distribution drawn from.")
        seed: int | None = seed_param()


CARDS = [Constant, GlorotNormal, GlorotUniform, HeNormal, HeUniform, Identity, LecunNormal,
         LecunUniform, Ones, Orthogonal, RandomNormal, RandomUniform, TruncatedNormal,
         VarianceScaling, Zeros]
