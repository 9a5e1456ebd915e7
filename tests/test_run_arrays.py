"""Arrays of a run: nested lists of floats are read by pyarrow, other nested lists by NumPy in C
(the element-wise walk only for the strings of non-finite numbers), and NumPy arrays are taken as
they are from Python."""

import base64
import math
import time

import numpy as np
import pytest

from nncards.contract import arrays, list_walk, run_json
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


def numpy_answer(decode, value):
    """What `decode` makes of a value: the array's dtype, shape and bytes, or the error it raises."""
    try:
        array = decode(value)
    except (arrays.ArrayError, ValueError) as exc:
        return type(exc), str(exc)
    return array.dtype, array.shape, array.tobytes()


def nested(generator, shape, leaf):
    if not shape:
        return leaf()
    return [nested(generator, shape[1:], leaf) for _ in range(shape[0])]


def odd_grids(generator):
    """Nested lists opening with a float, most with one thing somewhere that NumPy may read otherwise."""
    odd_leaves = [1, True, False, 2**53, 2**53 + 1, -2**63, 2**64, 2**70, 10**400, None, "1.5", "NaN", [], [1.0], {},
                  np.float32(0.1), np.float64(0.2), np.int64(3), np.bool_(True), np.float16(0.1), 1 + 2j,
                  math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
    for _ in range(600):
        shape = [int(size) for size in generator.integers(1, 5, generator.integers(1, 5))]
        value = nested(generator, shape, lambda: float(generator.random(dtype=np.float32)))
        depth = int(generator.integers(0, len(shape)))  # the holder's: 0 is the whole value
        holder = value
        for size in shape[:depth]:
            holder = holder[int(generator.integers(0, size))]
        at = int(generator.integers(0, len(holder)))
        change = generator.integers(0, 4)
        if change == 0 and depth == len(shape) - 1:
            holder[at] = odd_leaves[generator.integers(0, len(odd_leaves))]
        elif change == 1:  # one element more or fewer: ragged below the top
            holder.append(holder[at]) if generator.integers(0, 2) else holder.pop()
        elif change == 2:
            holder[at] = [tuple(holder[at]) if isinstance(holder[at], list) else holder[at], None, 0.5][
                generator.integers(0, 3)]
        yield value


def test_float_grids_decode_as_numpy_makes_them(monkeypatch):
    """Nested lists of floats go through pyarrow: the array is NumPy's own, to the bit (float32
    values, float64 values, specials), and whatever NumPy reads otherwise, or refuses (a ragged
    list, a null, a string, a big integer, a tuple or a float where a list goes), is left to it."""
    generator = np.random.default_rng(17)
    grids = [nested(generator, shape, lambda: float(generator.random(dtype=np.float32)))
             for shape in ([5], [3, 4], [2, 3, 4], [4, 3, 3, 2], [2, 1, 2, 1, 2])]
    grids += [nested(generator, [3, 5], lambda: float(generator.standard_normal() * 10.0 ** generator.integers(-300, 300)))]
    grids += [[[math.nan, -0.0, 5e-324], [math.inf, -math.inf, 1.7976931348623157e308]], [[0.5, 1, True, 2**53]]]
    for grid in grids:
        fast = arrays.float_grid(grid)
        assert fast is not None and (fast.dtype, fast.shape, fast.tobytes()) == numpy_answer(np.array, grid)
    # The one value read otherwise: a NumPy long double among the floats (no JSON text makes one).
    assert arrays.decode([0.5, np.longdouble(0.1)]).tolist() == [0.5, 0.1]
    answers = [(value, numpy_answer(arrays.decode, value)) for value in odd_grids(generator)]
    monkeypatch.setattr(arrays, "float_grid", lambda value: None)  # NumPy alone, as before
    for value, answer in answers:
        assert answer == numpy_answer(arrays.decode, value), value
    assert sum(isinstance(answer[0], type) for _, answer in answers) > 100  # refusals among them


class ListOfOwn(list):
    """A list subclass: NumPy reads it through the sequence protocol, so the walker leaves it."""


class FloatOfOwn(float):
    pass


def special_floats(generator):
    """Random doubles, a fifth of them NaN, infinities, zeros, subnormals or extremes."""
    specials = [math.nan, -math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, -5e-324, 2.2250738585072014e-308,
                1.7976931348623157e308, float(np.float32(0.1))]
    if generator.integers(0, 5) == 0:
        return specials[generator.integers(0, len(specials))]
    return float(generator.standard_normal() * 10.0 ** generator.integers(-320, 300))


def test_the_walker_reads_float_lists_as_numpy_does():
    """Exact lists of exact floats, 1-D to 5-D: the walker's array is NumPy's float64 one, to the bit."""
    assert list_walk.WALKER.get() is not None
    generator = np.random.default_rng(23)
    for shape in ([1], [7], [3, 4], [2, 3, 4], [4, 3, 3, 2], [2, 1, 2, 1, 2], [1, 1, 1, 1, 1]):
        for _ in range(5):
            grid = nested(generator, shape, lambda: special_floats(generator))
            walked = list_walk.floats(grid, shape)
            assert walked is not None
            assert (walked.dtype, walked.shape, walked.tobytes()) == numpy_answer(np.array, grid)


def test_the_walker_leaves_what_it_is_not_sure_of(monkeypatch):
    """Ragged lists, ints, bools, subclasses of list or float, strings, None, empty lists and lists
    changed after their first rows: the walker says nothing of them, and `decode` answers (its array
    or its error) as without the walker."""
    assert list_walk.WALKER.get() is not None
    aliased = [[0.5, 1.5]] * 3
    aliased[2] = aliased  # a list holding itself where a row goes
    lengthened = [[0.5, 1.5], [2.5, 3.5]]
    lengthened[1].append(4.5)
    emptied = [[0.5, 1.5], [2.5, 3.5]]
    emptied[1].clear()
    values = [[[0.5], [1.5, 2.5]], [[0.5, 1.5], [2.5]], [0.5, 1], [[0.5, 1.5], [2, 3]], [0.5, True], [0.5, 2**64],
              [0.5, "1.5"], [0.5, "NaN"], [0.5, None], [[0.5], None], [[0.5], []], [0.5, []], [0.5, [1.5]],
              [[0.5], [[1.5]]], [ListOfOwn([0.5]), [1.5]], [[0.5], ListOfOwn([1.5])], ListOfOwn([0.5, 1.5]),
              [0.5, FloatOfOwn(1.5)], [[0.5], (1.5,)], [0.5, np.float64(1.5)], [0.5, {}], aliased, lengthened,
              emptied]
    for value in values:
        shape, element = [], value
        while isinstance(element, list) and element:
            shape.append(len(element))
            element = element[0]
        assert list_walk.floats(value, shape) is None, value
    generator = np.random.default_rng(29)
    values += list(odd_grids(generator))
    answers = [(value, numpy_answer(arrays.decode, value)) for value in values]
    monkeypatch.setattr(list_walk, "floats", lambda value, shape: None)  # pyarrow and NumPy, as before
    for value, answer in answers:
        assert answer == numpy_answer(arrays.decode, value), value


def test_without_a_compiler_float_lists_are_read_as_before(tmp_path, monkeypatch):
    """No compiler: the walker is not built, and pyarrow reads the lists as ever."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(tmp_path / "no-compiler"))
    list_walk.WALKER.forget()
    try:
        assert list_walk.WALKER.get() is None
        grid = np.random.default_rng(31).normal(size=(6, 5, 3))
        assert list_walk.floats(grid.tolist(), [6, 5, 3]) is None
        assert arrays.decode(grid.tolist()).tobytes() == grid.tobytes()
        assert not list((tmp_path / "cache").glob("nncards/ops/*.so"))
    finally:
        list_walk.WALKER.forget()  # the next test loads the real library again


def stdlib_answer(text):
    try:
        return bytes(base64.b64decode(text, validate=True))
    except ValueError as exc:
        return type(exc), str(exc)


def our_answer(text):
    try:
        return bytes(arrays.b64decode(text))
    except ValueError as exc:
        return type(exc), str(exc)


@pytest.mark.parametrize("text", [
    b"", b"QQ==", b"QU==", b"QUI=", b"QUJD", b"QUJDRA==", b"QR==", b"QUJ=",  # valid (QR==, QUJ=: spare bits set)
    b"QQ=", b"QQ", b"Q", b"QUJ", b"Q===", b"QQ===", b"QQ==QQ==", b"QQ==a", b"====", b"=", b"QQ=A", b"Q=Q=",  # padding
    b"QUJD=", b"QUJD====",  # padding after a whole quantum: the standard library lets it pass
    b"QQ==\n", b" QQ==", b"QU JD", b"QUJD\n", b"QUJD\r\n", b"QUJD\t", b"QUJD-_==", b"QUJ\x00", b"QUJD\xff", b"QQ-=",
    "QUJD", "QUJD\u00e9", "QUJ\u0000",
])
def test_base64_is_read_by_the_standard_librarys_rules(text):
    """pybase64 decodes, but what passes and each error's message are the standard library's."""
    assert our_answer(text) == stdlib_answer(text)


def test_random_base64_texts_read_as_by_the_standard_library():
    generator = np.random.default_rng(11)
    alphabet = np.frombuffer(b"AQgw+/=\n -_.\x00\x80", np.uint8)
    for _ in range(20_000):
        text = generator.choice(alphabet, generator.integers(0, 14)).tobytes()
        assert our_answer(text) == stdlib_answer(text), text


@pytest.mark.parametrize("dtype", arrays.DTYPES)
def test_base64_blocks_decode_in_place_and_encode_alike(dtype):
    """A block becomes a native, writable array on the decoded buffer (no copy of it); encoding
    gives the standard library's text, bfloat16 and 0-d arrays included."""
    values = np.arange(-6, 6).reshape(3, 4) % (2 if dtype == "bool" else 100)
    array = arrays.cast(values.astype(np.int64 if dtype != "bool" else bool), dtype)
    for shown in (array, array[0, 0].copy()):
        block = arrays.encode(shown, as_base64=True)
        assert block["base64"] == base64.b64encode(shown.tobytes()).decode()
        decoded = arrays.decode(block)
        assert decoded.dtype == shown.dtype and decoded.dtype.isnative and decoded.shape == shown.shape
        assert decoded.tobytes() == shown.tobytes() and decoded.flags.writeable
        assert not decoded.flags.owndata  # a view of the decoded buffer, not a copy


def test_base64_blocks_that_do_not_fit_are_refused():
    with pytest.raises(arrays.ArrayError, match="base64 is not valid: Incorrect padding"):
        arrays.decode({"dtype": "float32", "shape": [1], "base64": "AACAPw"})
    with pytest.raises(arrays.ArrayError, match=r"shape \[2\] of float32 needs 8 bytes, got 4"):
        arrays.decode({"dtype": "float32", "shape": [2], "base64": "AACAPw=="})
    # A padding sign after a whole quantum: pybase64 refuses it, the standard library reads it.
    assert arrays.decode({"dtype": "bool", "shape": [6], "base64": "AQABAQAA="}).tolist() == [1, 0, 1, 1, 0, 0]


def test_numpy_arrays_are_taken_as_they_are():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    run = Run.model_validate({"graph": {"nodes": [], "edges": []},
                              "steps": [{"kind": "predict", "inputs": {"x": x}}]})
    assert run.steps[0].inputs["x"] is x and arrays.decode(x) is x and arrays.count_elements(x) == 6
    assert "ndarray" not in str(Run.model_json_schema())



def test_cast_copies_only_to_change_the_type():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert arrays.cast(x, "float32") is x
    for changed in (arrays.cast(x, "float64"), arrays.cast(x.astype(">f4"), "float32")):
        assert changed.dtype.isnative and not np.shares_memory(changed, x) and changed.tolist() == x.tolist()
    with pytest.raises(arrays.ArrayError, match="cannot be cast"):
        arrays.cast(x, "int32")


def test_every_step_runs_on_read_only_arrays_mapped_from_files(tmp_path):
    """A server's run worker gets the request's arrays mapped read-only from their files (the
    server's `StoredRequest`); the steps use them as they are, and none writes to them."""
    from graphs import bn_graph

    from nncards.execute.entry import execute
    from nncards.server.services.request_arrays import StoredRequest

    x = np.random.default_rng(1).normal(size=(16, 2)).astype(np.float32)
    data = {"x": x}
    request = Run.model_validate({
        "graph": bn_graph([2]), "seed": 1, "weights": {"bn": {"gamma": np.array([2.0, 3.0], np.float32)}},
        "steps": [{"kind": "call", "inputs": data, "training": True},
                  {"kind": "fit", "inputs": data, "targets": {"y": x * 2}, "epochs": 2, "batch_size": 4,
                   "shuffle": True, "inspect_every": 1},
                  {"kind": "evaluate", "inputs": data, "targets": {"y": x * 2}},
                  {"kind": "predict", "inputs": data, "batch_size": 4},
                  {"kind": "inspect", "inputs": data, "training": True}]})
    own = execute(request.model_copy(deep=True)).as_json()
    stored = StoredRequest.set_aside(request, tmp_path)
    files = {path: open(path, "rb").read() for path in stored.files}
    loaded = stored.loaded()
    mapped = loaded.steps[0].inputs["x"]
    assert not mapped.flags.writeable and arrays.cast(mapped, "float32") is mapped

    result = execute(loaded).as_json()
    assert result["status"] == "succeeded", result["error"]
    assert [step["kind"] for step in result["steps"]] == ["call", "fit", "evaluate", "predict", "inspect"]
    assert result["steps"][1]["history"] == own["steps"][1]["history"]  # as with arrays of its own
    assert arrays.decode(result["steps"][3]["outputs"]["y"]).tolist() == arrays.decode(own["steps"][3]["outputs"]["y"]).tolist()
    assert {path: open(path, "rb").read() for path in stored.files} == files


def test_the_inputs_a_request_reads_as_float32_are_its_float32_input_nodes():
    """What the server asks `run_json.parse` to read as float32: the Input nodes `_cast_inputs` casts
    to float32 (the default dtype), of a graph as parsed; none of a member that is not a GRAPH."""
    from nncards.server.services.request_arrays import float32_inputs

    graph = {"nodes": [{"id": "x", "card": "input", "params": {"shape": [2]}},
                       {"id": "wide", "card": "input", "params": {"shape": [2], "dtype": "float64"}},
                       {"id": "half", "card": "input", "params": {"shape": [2], "dtype": "float16"}},
                       {"id": "bad", "card": "input", "params": {"shape": "two"}},
                       {"id": "d", "card": "layer_Dense", "params": {"units": 2}}], "edges": []}
    assert float32_inputs(graph) == {"x"}
    for not_a_graph in (None, [graph], {"nodes": "x"}):
        assert float32_inputs(not_a_graph) == set()


def test_the_server_keeps_request_arrays_as_files_beside_the_run(live_server):
    """Lists, base64 blocks (a long one decoded straight from the body) and JSON's NaN token (read by
    the fallback parser) arrive as .npy files in the run's folder, a step's inputs cast to their
    Input's dtype (float32 here) as the run casts them; the run record holds the request without
    them; the run uses them."""
    import base64
    import json
    import sqlite3

    from graphs import bn_graph

    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    gamma = np.array([2.0, 3.0], dtype=np.float32)
    long = np.arange(10_000.0).reshape(5000, 2)
    body = json.dumps({"graph": bn_graph([2]), "weights": {"bn": {"gamma": {
        "dtype": "float32", "shape": [2], "base64": base64.b64encode(gamma.tobytes()).decode()}}},
        "steps": [{"kind": "call", "inputs": {"x": x.tolist()}},
                  {"kind": "call", "inputs": {"x": [[float("nan"), 1.0]]}},
                  {"kind": "call", "inputs": {"x": arrays.encode(long, as_base64=True)}}]})
    assert "NaN" in body and len(body) > run_json.BIG_TEXT_BYTES
    answer = live_server.client.post("/runs", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 201, answer.text
    run_id, deadline = answer.json()["run_id"], time.monotonic() + 300  # the first run imports TensorFlow
    while (result := live_server.client.get(f"/runs/{run_id}?arrays=base64").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert result["status"] == "succeeded", result["error"]
    assert arrays.decode(result["layers"]["bn"]["weights"]["gamma"]).tolist() == gamma.tolist()

    folder = live_server.data_dir / "runs" / result["run_id"] / "request"
    stored = [np.load(folder / f"{n}.npy") for n in range(4)]
    assert stored[0].tolist() == gamma.tolist()
    assert stored[1].dtype == np.float32 and stored[1].tolist() == x.astype(np.float32).tolist()
    assert stored[3].dtype == np.float32 and stored[3].tolist() == long.astype(np.float32).tolist()
    assert arrays.decode(result["steps"][2]["outputs"]["y"]).shape == (5000, 2)
    assert math.isnan(stored[2][0, 0]) and stored[2][0, 1] == 1.0
    with sqlite3.connect(live_server.data_dir / "runs.sqlite3") as db:
        request = json.loads(db.execute("SELECT request FROM runs WHERE run_id = ?", (result["run_id"],)).fetchone()[0])
    assert request["weights"] == {"bn": {"gamma": []}} and request["steps"][0]["inputs"] == {"x": []}


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4), np.arange(12, dtype=">i4").reshape(3, 4), np.ones((2, 3), bool),
    np.zeros((0, 4)), np.array(3.5), np.arange(24, dtype=np.float16).reshape(2, 3, 4).transpose(2, 0, 1),
    np.asfortranarray(np.arange(6.0).reshape(2, 3))], ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_a_request_array_file_is_what_numpy_saves(tmp_path, array):
    import io

    from nncards.server.services.request_arrays import write_npy

    saved = io.BytesIO()
    np.save(saved, array if array.flags.c_contiguous else array.copy(order="C"), allow_pickle=False)
    write_npy(tmp_path / "a.npy", array)
    assert (tmp_path / "a.npy").read_bytes() == saved.getvalue()
    loaded = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert loaded.dtype == array.dtype and np.array_equal(loaded, array)


def test_a_request_array_that_does_not_fit_on_the_disk_raises_oserror(tmp_path):
    """Its data goes through a mapping of the file: a page the disk has no room for must not be
    written through the mapping (SIGBUS would end the server). Run in a child: a signal ends it, not pytest."""
    import subprocess
    import sys

    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        code = ("import numpy as np, pathlib, sys\n"
                "from nncards.server.services.request_arrays import write_npy\n"
                "try:\n"
                "    write_npy(pathlib.Path(sys.argv[1]) / 'a.npy', np.ones(2**19))\n"  # 4 MiB
                "except OSError as exc:\n"
                "    print('OSError', exc.errno)\n")
        done = subprocess.run([sys.executable, "-c", code, str(small)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.startswith("OSError"), (done.returncode, done.stdout, done.stderr)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


@pytest.mark.parametrize("as_base64", [False, True], ids=["lists", "base64"])
def test_a_stored_result_streams_as_its_json(tmp_path, as_base64):
    """A RUN RESULT kept as a skeleton and .npy files (small arrays read whole, large ones mapped,
    empty, 0-d and bfloat16 ones) streams as the JSON of the result with its arrays in place."""
    import json

    import ml_dtypes

    from nncards.server.services.results import MAPPED_ELEMENTS, PIECE_BYTES, result_json, write_arrays

    from nncards.contract.run import RunResult

    generator = np.random.default_rng(0)
    kept = {"small": generator.random((3, 4), dtype=np.float32), "large": generator.random(MAPPED_ELEMENTS + 7),
            "empty": np.zeros((0, 2), np.int32), "scalar": np.array(2.5), "half": np.arange(6, dtype=ml_dtypes.bfloat16)}
    layers = {name: {"class": "Dense", "config": {"name": name, "units": [1, 2, {"deep": "é"}], "use_bias": True},
                     "weights": {"kernel": arrays.encode(value, as_base64=True)}} for name, value in kept.items()}
    result = RunResult.model_validate({"run_id": "r", "status": "succeeded", "layers": layers,
                                       "steps": [{"kind": "fit", "history": {"loss": [0.5, 0.25]}}]})
    skeleton, _ = write_arrays(result, tmp_path, 10**7)
    pieces = list(result_json(skeleton.as_json(), tmp_path, as_base64))
    assert all(len(piece) < 2 * PIECE_BYTES for piece in pieces)
    expected = result.as_json()
    for name, value in kept.items():
        expected["layers"][name]["weights"]["kernel"] = arrays.encode(value, as_base64)
    assert json.loads(b"".join(pieces)) == expected
