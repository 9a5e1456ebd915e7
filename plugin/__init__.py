"""nncards: neural-network cards for visual node editors.

The Python API of CONTRACT §7. Importing this package does not import TensorFlow; validating
shapes, building a model or running one does, on first use.
"""

__version__ = "0.1.0"


def catalog() -> dict:
    """The card catalogue, as `GET /api/v1/cards` answers it."""
    from nncards.registry import registry

    return registry().catalogue().model_dump(mode="json")


def validate(graph: dict) -> dict:
    """Validation of a graph, as `POST /api/v1/graphs/validate` answers it."""
    from nncards.build.validation import validate as _validate

    return _validate(graph)


def run(request: dict) -> dict:
    """A finished RUN RESULT; a bad graph or a failing step gives status "failed", never raises."""
    from nncards.execute.entry import execute

    return execute(request).as_json()


def build_model(graph: dict):
    """The `keras.Model` a graph describes; raises `NncardsError` when the graph is not valid."""
    from nncards.build.model import build_model as _build_model

    return _build_model(graph)
