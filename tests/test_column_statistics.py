"""The inspection's statistics kernel against NumPy, on the cases a tensor can bring."""

import numpy as np
import pytest

from nncards.contract.inspection import HISTOGRAM_BINS
from nncards.execute.column_statistics import column_statistics

RNG = np.random.default_rng(11)


def with_nonfinite(matrix: np.ndarray) -> np.ndarray:
    matrix = matrix.copy()
    matrix[0, 0], matrix[-1, 0], matrix[len(matrix) // 2, -1] = np.nan, np.inf, -np.inf
    return matrix


CASES = {
    "normal": RNG.normal(3.0, 2.0, (500, 7)).astype("float32"),
    "relu": np.maximum(RNG.normal(size=(300, 16)), 0).astype("float32"),
    "one row": RNG.normal(size=(1, 5)).astype("float32"),
    "one column": RNG.normal(size=(64, 1)).astype("float32"),
    "constant": np.full((10, 3), 2.5, "float32"),
    "large mean": (1e4 + RNG.normal(size=(400, 4))).astype("float32"),
    "non-finite": with_nonfinite(RNG.normal(size=(50, 4)).astype("float32")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_statistics_equal_numpys_on_the_finite_values(name):
    matrix = CASES[name]
    found = column_statistics(matrix)
    values = matrix.astype("float64")
    finite = np.isfinite(values)
    for column in range(matrix.shape[1]):
        kept = values[finite[:, column], column]
        assert found["mean"][column] == pytest.approx(kept.mean(), rel=1e-9, abs=1e-9)
        assert found["variance"][column] == pytest.approx(kept.var(), rel=1e-9, abs=1e-9)
        assert found["std"][column] == pytest.approx(kept.std(), rel=1e-9, abs=1e-9)
        assert (found["min"][column], found["max"][column]) == (kept.min(), kept.max())
        assert found["zeros"][column] == pytest.approx((values[:, column] == 0).mean())
        assert found["nonfinite"][column] == pytest.approx((~finite[:, column]).mean())
    every = values[finite]
    low, high = every.min(), every.max()
    counts, edges = np.histogram(every, bins=HISTOGRAM_BINS, range=(low, high if high > low else low + 1))
    np.testing.assert_allclose(found["edges"], edges)
    assert found["counts"].sum() == every.size
    assert np.abs(found["counts"] - counts).sum() <= 2  # a value on a bin edge may round either side
    assert found["all_finite"] is bool(finite.all())


def test_a_channel_without_finite_values_and_a_matrix_without_rows():
    matrix = RNG.normal(size=(6, 2)).astype("float32")
    matrix[:, 1] = np.nan
    found = column_statistics(matrix)
    assert found["mean"][1] == 0.0 and found["std"][1] == 0.0 and found["nonfinite"][1] == 1.0
    assert found["min"][1] == np.inf and found["max"][1] == -np.inf and not found["all_finite"]
    empty = column_statistics(np.zeros((0, 3), "float32"))
    assert list(empty["edges"][[0, -1]]) == [0.0, 1.0] and empty["counts"].sum() == 0
    assert not empty["all_finite"]  # its min and max are infinite: spelled out, not written as numbers
