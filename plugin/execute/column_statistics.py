"""Per-column statistics of a (values, channels) matrix in two passes over memory.

An inspection reduces every tensor of a network (DenseNet121: 65 million values at batch 16),
so the reductions, not the forward pass, set its cost. TensorFlow runs each reduction as its own
pass over the tensor (a dozen of them, ~5 ns a value); these Numba kernels do the same work in
two passes, ~1 ns a value on this machine: the first finds sums, extremes, zeros and finite
counts, the second (which needs the mean and the range) the squared deviations and the histogram.
Non-finite values are counted apart and left out of everything else. Accumulators are float64.
The kernels let go of the GIL, so a caller's threads reduce several tensors at once (Numba's own
parallel loops synchronise at every call: on a busy machine a tensor waited for a descheduled
thread, ~10 ms each).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from nncards.contract.inspection import HISTOGRAM_BINS


@numba.njit(nogil=True, cache=True)
def _first_pass(matrix):
    rows, columns = matrix.shape
    total = np.zeros(columns)
    low = np.full(columns, np.inf, np.float32)
    high = np.full(columns, -np.inf, np.float32)
    zeros = np.zeros(columns, np.int64)
    finite = np.zeros(columns, np.int64)
    for row in range(rows):
        for column in range(columns):
            value = matrix[row, column]
            if math.isfinite(value):
                total[column] += value
                finite[column] += 1
                low[column] = min(low[column], value)
                high[column] = max(high[column], value)
                if value == 0.0:
                    zeros[column] += 1
    return total, low, high, zeros, finite


@numba.njit(nogil=True, cache=True)
def _second_pass(matrix, mean, start, width):
    rows, columns = matrix.shape
    squares = np.zeros(columns)
    counts = np.zeros(HISTOGRAM_BINS, np.int64)
    scale = HISTOGRAM_BINS / width
    for row in range(rows):
        for column in range(columns):
            value = matrix[row, column]
            if math.isfinite(value):
                deviation = value - mean[column]
                squares[column] += deviation * deviation
                bin_index = int((value - start) * scale)  # values >= start: truncation is floor
                counts[min(max(bin_index, 0), HISTOGRAM_BINS - 1)] += 1
    return squares, counts


def column_statistics(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, variance, std, min, max, zero and non-finite fractions per column, and a histogram
    (HISTOGRAM_BINS bins from the smallest finite value to the largest; the last includes its
    right edge) of the whole matrix. A column without finite values has mean and variance 0,
    min +inf and max -inf; a matrix without any has the histogram range [0, 1]."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    rows = max(matrix.shape[0], 1)
    total, low, high, zeros, finite = _first_pass(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite > 0, total / finite, 0.0)
    start, stop = (float(low.min()), float(high.max())) if finite.any() else (0.0, 0.0)
    width = stop - start if stop > start else 1.0  # one value (or none): a unit-wide range
    squares, counts = _second_pass(matrix, mean, start, width)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.where(finite > 0, squares / finite, 0.0)
    return {"mean": mean, "variance": variance, "std": np.sqrt(variance), "min": low, "max": high,
            "zeros": zeros / rows, "nonfinite": (rows - finite) / rows,
            "edges": np.linspace(start, start + width, HISTOGRAM_BINS + 1), "counts": counts}
