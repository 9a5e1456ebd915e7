"""Arrays of a run: nested lists are read by NumPy in C (the element-wise walk only for the strings
of non-finite numbers), and NumPy arrays are taken as they are from Python."""

import math

import numpy as np
import pytest

from nncards.contract import arrays
from nncards.contract.run import Run


def test_nested_lists_decode_with_their_kind():
    assert arrays.decode([[1, 2], [3, 4]]).dtype.kind == "i"
    assert arrays.decode([[1.5, 2], [3, 4]]).dtype.kind == "f"
    assert arrays.decode([True, False]).dtype.kind == "b"
    decoded = arrays.decode([[1.0, "NaN"], ["Infinity", "-Infinity"]])
    assert decoded.dtype.kind == "f" and math.isnan(decoded[0, 1]) and decoded[1, 0] == math.inf


@pytest.mark.parametrize("value, message", [([[1.0], [2.0, 3.0]], "ragged"), ([1.0, None], "null"),
                                            ([1.0, "1.5"], "not a number"), ([1.0, {}], "only numbers")])
def test_malformed_lists_are_refused(value, message):
    with pytest.raises(arrays.ArrayError, match=message):
        arrays.decode(value)


def test_numpy_arrays_are_taken_as_they_are():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    run = Run.model_validate({"graph": {"nodes": [], "edges": []},
                              "steps": [{"kind": "predict", "inputs": {"x": x}}]})
    assert run.steps[0].inputs["x"] is x and arrays.decode(x) is x and arrays.count_elements(x) == 6
    assert "ndarray" not in str(Run.model_json_schema())
