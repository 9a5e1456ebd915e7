// Nested Python lists of Python floats copied into one float64 buffer, for arrays.float_grid.
// Called through ctypes.PyDLL, so with the GIL held: no Python code runs during the walk, and no
// list can change under it. Every object's type and every list's length are checked before it is
// read; the walk keeps its own stack, as deep as the shape (at most kMaxDimensions), not C's.
#include <Python.h>

#include <cstdint>

namespace {
constexpr int kMaxDimensions = 32;  // arrays.GRID_DIMENSIONS: float_grid's shapes are shallower
}

// 1 when `value` is a full grid of `shape` (exact lists down to exact floats), its values then in
// `out` in C order (prod(shape) doubles); 0 otherwise ("not sure": another reader answers).
extern "C" int nncards_float_lists(PyObject* value, const int64_t* shape, int dimensions, double* out) {
  if (dimensions < 1 || dimensions > kMaxDimensions) return 0;
  if (!PyList_CheckExact(value) || PyList_GET_SIZE(value) != shape[0]) return 0;
  PyObject* lists[kMaxDimensions];
  Py_ssize_t next[kMaxDimensions];
  const int leaf = dimensions - 1;
  int depth = 0;
  lists[0] = value;
  next[0] = 0;
  while (depth >= 0) {
    PyObject* list = lists[depth];
    if (depth == leaf) {  // a row of floats, its length checked as it was entered
      for (Py_ssize_t i = 0, size = PyList_GET_SIZE(list); i < size; ++i) {
        PyObject* item = PyList_GET_ITEM(list, i);
        if (!PyFloat_CheckExact(item)) return 0;
        *out++ = PyFloat_AS_DOUBLE(item);
      }
      --depth;
    } else if (next[depth] == shape[depth]) {
      --depth;
    } else {
      PyObject* child = PyList_GET_ITEM(list, next[depth]);
      ++next[depth];
      if (!PyList_CheckExact(child) || PyList_GET_SIZE(child) != shape[depth + 1]) return 0;
      ++depth;
      lists[depth] = child;
      next[depth] = 0;
    }
  }
  return 1;
}
