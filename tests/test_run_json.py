"""A RUN's JSON parsed with its arrays straight into NumPy (`run_json.parse`) reads every document as
orjson and NumPy do (`run_json.loads`, then `arrays.decode`): the same values, dtypes, shapes and
signs of zero, the same errors, whatever the text."""

from __future__ import annotations

import json
import math
import os
import re
import time
from decimal import Decimal

import numpy as np
import pytest
from pydantic import ValidationError

from nncards.contract import arrays, number_grid, run_json
from nncards.contract.run import ARRAY_FIELDS

from conftest import LiveServer


def read_as_before(document):
    """The document with each array of a step or of the weights decoded as `decode_arrays` would:
    (dtype, shape, bytes), or the error's message."""

    def decoded(value):
        try:
            array = arrays.decode(value)
        except (arrays.ArrayError, ValidationError) as exc:
            return "error", str(exc)
        return array.dtype.str, array.shape, array.tobytes()

    def group(value):
        return {k: decoded(v) if isinstance(v, list | np.ndarray | dict) else v for k, v in value.items()} \
            if isinstance(value, dict) else value

    if not isinstance(document, dict):
        return document
    document = dict(document)
    if isinstance(document.get("weights"), dict):
        document["weights"] = {node: group(value) for node, value in document["weights"].items()}
    if isinstance(document.get("steps"), list):
        document["steps"] = [{k: group(v) if k in ARRAY_FIELDS else v for k, v in step.items()}
                             if isinstance(step, dict) else step for step in document["steps"]]
    return document


def assert_read_alike(body: bytes, fast: bool | None = None):
    """Both ways read the body alike; `fast`: whether the array `x` must come as NumPy straight away."""
    try:
        expected = read_as_before(run_json.loads(body))
    except ValueError as exc:
        with pytest.raises(type(exc), match=re.escape(str(exc))):
            run_json.parse(body)
        return
    parsed = run_json.parse(body)
    assert repr(read_as_before(parsed)) == repr(expected)
    if fast is not None:
        assert isinstance(parsed["steps"][0]["inputs"]["x"], np.ndarray) is fast


def step_body(x: str, space: str = "") -> bytes:
    return (f'{{"graph": {{"nodes": [{{"id": "x", "card": "input", "params": {{"shape": [2]}}}}], "edges": []}},'
            f'{space}"steps": [{{"kind": "predict", "inputs": {{"x": {x}}}}}]}}').encode()


@pytest.mark.parametrize("x", [
    "[[1.5, 2], [3, 4]]", "[[1, 2], [3, 4]]", "[1e5, 1E5, 1e+5, 1E-5, 2.5e-300, 4.9e-324, 1e-400, 1.7976931348623157e308]",
    "[-0, 1.5]", "[-0]", "[-0.0, 0.0, -0.0e3]", "[0.1, 0.30000000000000004, 1.0000000000000000000001]",
    f"[{2**53 + 1}, {2**63 - 1}, {-2**63}]", f"[{2**53 + 1}, 0.5]",
    "[[[[[[[[1]]]]]]]]", "[" * 40 + "1" + "]" * 40, "[[1, 2, 3], [4, 5, 6]]",
    "[]", "[[]]", "[[], []]", "[[[]], [[]]]",
])
def test_numbers_come_as_numpy_read_alike(x):
    assert_read_alike(step_body(x), fast=not x.startswith("[" * 40))


@pytest.mark.parametrize("x", [
    "[[1, 2], [3]]", "[[1, 2], [3, 4, 5]]", "[[1, 2, 3], [4], [5, 6]]", "[[1], []]", "[[], [1]]", "[1, [2]]",
    "[[1], 2]", "[[1, 2], [3, [4]]]", "[[[1, 2]], [[3], [4]]]",
    '[1, "NaN"]', '[1.0, "Infinity", "-Infinity"]', '[1, "x"]', "[1, null]", "[true, false]", "[1, true]",
    "[1, {}]", '[[1], "a"]', "[NaN, 1.0]", "[Infinity]", "[-Infinity, 1]", f"[{2**64}]", f"[{2**64}, 1.5]",
    f"[{2**63}, -1]", f"[{2**63}, 0.5]", f"[{2**63 - 1}, {2**63}]", f"[{10**20}]", f"[1.5, {-10**30}]", "[1e309]", '{"dtype": "float32", "shape": [1], "base64": "AACAPw=="}', '"text"', "3",
])
def test_everything_else_is_read_as_before(x):
    assert_read_alike(step_body(x))


@pytest.mark.parametrize("space", [" ", "\n", "\t", "\r\n  "])
def test_white_space_anywhere(space):
    x = space.join(["[", "[", "1.5", ",", "2", "]", ",", "[", "-3e2", ",", "4", "]", "]"])
    assert_read_alike(step_body(x, space), fast=True)
    assert_read_alike(json.dumps(json.loads(step_body(x)), indent=4).encode(), fast=True)


def test_brackets_and_digits_in_strings_change_nothing():
    body = json.dumps({"graph": {"nodes": [{"id": 'a[1, 2]"[\\', "card": "e\u005b9"}], "edges": []},
                       "steps": [{"kind": "predict", "inputs": {"x": [[1, 2], [3, 4.5]], '"]': [[1], [2]]}}]})
    assert_read_alike(body.encode(), fast=True)
    assert_read_alike(body.replace("[[1], [2]]", "[[1], [[2]]]").encode(), fast=False)


def test_weights_and_targets_and_duplicate_keys():
    body = (b'{"weights": {"bn": {"gamma": [1, 2.5], "beta": [[0]]}}, "steps": [{"kind": "fit", '
            b'"inputs": {"x": [[1]]}, "targets": {"y": [[2.5]], "y": [[1, 2]]}}]}')
    assert_read_alike(body)
    assert_read_alike(body.replace(b', "y": [[1, 2]]', b''), fast=True)
    block = b'{"dtype": "float32", "shape": [1], "base64": "AACAPw=="}'
    for duplicated in (b'{"steps": [{"kind": "call", "kind": "predict", "inputs": {"x": %s}}]}' % block,
                       b'{"weights": {"bn": {"gamma": "a", "gamma": %s}}, "weights": {}}' % block):
        assert run_json.parse(duplicated) == run_json.loads(duplicated)


def test_other_documents_are_read_as_before():
    for body in [b"[[1, 2], [3]]", b"3", b'{"steps": 3, "weights": []}', b'{"steps": [1, {"inputs": 2}]}', b"{}"]:
        assert run_json.parse(body) == run_json.loads(body)
    for body in [b"", b"[1,", b'{"steps": [}', b"\xff", b'{"a": 1} 2']:
        with pytest.raises(ValueError) as fast:
            run_json.parse(body)
        with pytest.raises(ValueError) as before:
            run_json.loads(body)
        assert str(fast.value) == str(before.value)


def test_a_shape_claimed_by_first_elements_is_not_built():
    """A ragged array whose first elements claim a huge shape: the check gives up, no grid is made."""
    first = "[" + ", ".join(["[" + ", ".join(["1"] * 3000) + "]"] + ["[]"] * 2999) + "]"
    assert_read_alike(step_body(first))


@pytest.mark.parametrize("block_bytes", [1, 16, 2**16])
def test_grids_are_checked_a_block_of_rows_at_a_time(monkeypatch, block_bytes):
    """A fault in any row of an array, before, in or after a block of rows compared at once, is found."""
    monkeypatch.setattr(run_json, "SKELETON_BLOCK_BYTES", block_bytes)
    rows = ["[1, 2.5]"] * 40
    assert_read_alike(step_body("[" + ", ".join(rows) + "]"), fast=True)
    for changed in (1, 17, 38, 39):
        for fault in ("[1]", "[1, 2, 3]", "[[1], 2]", "[1, [2]]", "[]", '[1, "2"]'):
            x = "[" + ", ".join(rows[:changed] + [fault] + rows[changed + 1:]) + "]"
            assert_read_alike(step_body(x), fast=False)


def test_random_documents_read_alike():
    generator = np.random.default_rng(7)
    for _ in range(200):
        shape = tuple(generator.integers(0, 4, size=generator.integers(1, 4)))
        values = generator.normal(size=shape) * 10.0 ** generator.integers(-30, 30)
        if generator.random() < 0.3:
            values = generator.integers(-2**63, 2**63 - 1, size=shape, endpoint=True) // 10 ** generator.integers(0, 19)
        x = json.dumps(values.tolist())
        if generator.random() < 0.3 and "," in x:  # an element dropped: ragged, or not JSON
            at = x.index(",")
            x = x[:at] + x[x.index(",", at + 1) if "," in x[at + 1:] else at + 1:]
        assert_read_alike(step_body(x))


def test_skeleton_of_texts_mostly_strings_is_the_expressions():
    """The quote-pairing reader, given a whole text, gives what emptying each string by the regular
    expression gives (`skeleton`), malformed texts and escapes included."""
    generator = np.random.default_rng(3)
    alphabet = np.frombuffer(b'[]{}",: 0123456789abcE\\.-', np.uint8)
    texts = [b'{"x": {"base64": "AAEC3+/9AAEC3+/9AAEC3+/9AAEC3+/9AAEC3"}, "y": [1, 2.5e-3]}', b'"unclosed 123', b'"a" "b" 7 "c"',
             b'"ab"' * (run_json.FEW_QUOTES // 2 + 1) + b'"x1234567890123456789012345"']
    texts += [generator.choice(alphabet, generator.integers(0, 40)).tobytes() for _ in range(5000)]
    for text in texts:
        assert read_in_pieces([text]) == (run_json.skeleton(text) if b"\\" not in text else None), text


def pieces_of(text: bytes, generator) -> list[bytes]:
    """The text cut at random places: in strings, numbers and escapes, at quotes, into empty pieces."""
    cuts = sorted(generator.integers(0, len(text) + 1, size=generator.integers(0, 8)))
    return [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)])]


def read_in_pieces(pieces: list[bytes]) -> bytes | None:
    reader = run_json.SkeletonReader()
    for piece in pieces:
        reader.feed(piece)
    return reader.skeleton(b"".join(pieces))


def quotes_in_pieces(pieces: list[bytes]) -> list[int] | None:
    reader = run_json.SkeletonReader()
    for piece in pieces:
        reader.feed(piece)
    return reader.quote_positions()


def test_skeleton_read_in_pieces_is_the_skeleton_of_the_whole():
    """Fed piece by piece (a request body as it arrives), the skeleton is `skeleton` of the whole text;
    None when the text holds a backslash."""
    generator = np.random.default_rng(5)
    alphabet = np.frombuffer(b'[]{}",: 0123456789abcE\\.-\n', np.uint8)
    block = b'"' + b"AAEC3+/9" * 5000 + b'"'
    texts = [b'{"x": {"dtype": "float32", "shape": [2, 3], "base64": %s}, "y": [[1, 2.5e-3], [-0.5, 3E+7]]}' % block,
             step_body(json.dumps(generator.normal(size=(40, 30)).tolist())), b'"unclosed 123', b'"a" "b" 7 "c"',
             b'["a\\"b", [1]]', b'"ab"' * (run_json.FEW_QUOTES // 2 + 1) + b'"x1234567890"', b""]
    texts += [generator.choice(alphabet, generator.integers(0, 60)).tobytes() for _ in range(3000)]
    for text in texts:
        expected = run_json.skeleton(text) if b"\\" not in text else None
        quotes = run_json._quote_positions(text)
        quotes = quotes if b"\\" not in text and len(quotes) <= run_json.FEW_QUOTES else None
        for _ in range(5):
            pieces = pieces_of(text, generator)
            assert read_in_pieces(pieces) == expected, pieces
            assert quotes_in_pieces(pieces) == quotes, pieces
        assert read_in_pieces([text[i:i + 1] for i in range(len(text))]) == expected


def test_ranges_of_a_buffer_read_as_its_pieces(long_arrays_reader):
    """A body received straight into its buffer is fed as ranges of that buffer, where they lie."""
    generator = np.random.default_rng(14)
    x = json.dumps(generator.normal(size=(300, 20)).tolist())
    for text in (('{"a": %s, "b\\"": [1], "c": "%s", "d": %s}' % (x, "ab[1, 2]" * 2000, x)).encode(),
                 ('{"a": %s, "c": "%s", "d": %s}' % (x, "ab[1, 2]" * 2000, x)).encode()):
        buffer = bytearray(text)
        for _ in range(5):
            inner = generator.integers(0, len(text) + 1, size=generator.integers(0, 8))
            cuts = [0, *sorted(map(int, inner)), len(text)]
            reader = run_json.SkeletonReader()
            for start, end in zip(cuts, cuts[1:]):
                reader.feed(buffer, start, end)
            expected = None if b"\\" in text else run_json.skeleton(text)
            assert reader.skeleton(buffer) == expected
            assert reader.quote_positions() == (None if expected is None else run_json._quote_positions(text))


def test_numbers_and_white_space_dropped_by_nncards_reader_as_by_translate():
    assert number_grid.library() is not None
    generator, scratch = np.random.default_rng(12), bytearray()
    every_byte = np.frombuffer(bytes(range(256)), np.uint8)
    numbers = np.frombuffer(b"0123456789.eE+- \t\n\r,[]{}:\"", np.uint8)  # mostly dropped, as a body of numbers is
    for number in range(3000):
        text = generator.choice(every_byte if number % 2 else numbers, generator.integers(0, 300)).tobytes()
        start = int(generator.integers(0, len(text) + 1))
        end = int(generator.integers(start, len(text) + 1))
        assert number_grid.without_numbers(text, start, end, scratch) == text[start:end].translate(
            None, run_json.NUMBER_AND_SPACE)


def test_nncards_reader_counts_a_texts_values_by_its_commas_across_its_blocks():
    """The count runs over blocks of 255 x 64 bytes, one byte a lane: texts of up to three blocks
    and a tail, dense in commas (a lane that wraps at 256, or a lost tail, miscounts)."""
    reader, generator = number_grid.library(), np.random.default_rng(14)
    assert reader is not None
    block = 255 * 64
    for length in (0, 1, 63, 64, block - 1, block, block + 1, 2 * block + 77, 3 * block):
        for density in (0.0, 0.3, 1.0):
            text = np.where(generator.random(length) < density, ord(","), ord("7")).astype(np.uint8)
            address = text.ctypes.data if length else np.zeros(1, np.uint8).ctypes.data
            assert reader.nncards_grid_values(address, length) == int((text == ord(",")).sum()) + 1


def test_long_texts_read_in_pieces_have_the_skeleton_of_the_whole(long_arrays_reader):
    """Long stretches outside strings (read by nncards' reader where it is built) among strings, cut anywhere."""
    generator = np.random.default_rng(13)
    for _ in range(40):
        x = json.dumps(generator.normal(size=(int(generator.integers(1, 300)), 20)).tolist())
        names = ['"' + "ab[1, 2]" * int(generator.integers(0, 3000)) + '"' for _ in range(3)]
        text = ('{"a": %s, %s: [%s, 7e3, %s], "b": {"c": %s}}' % (x, names[0], names[1], x, names[2])).encode()
        text = text.replace(b", ", b",\n\t " if generator.random() < 0.5 else b", ")
        pieces = pieces_of(text, generator)
        assert read_in_pieces(pieces) == run_json.skeleton(text)
        assert quotes_in_pieces(pieces) == run_json._quote_positions(text)


def test_skeleton_in_pieces_needs_no_pass_over_the_whole_text():
    reader = run_json.SkeletonReader()
    for piece in (b'{"base64": "12', b"34" * 1000, b'56"', b', "x": [1, 2]}'):
        reader.feed(piece)
    assert reader.skeleton(b"") == b'{"":"","":[,]}'  # made of the pieces: the text given is not read


def big_block(dtype: str = "float32", shape=(200, 400), **changes) -> dict:
    """A base64 block whose text is longer than BIG_TEXT_BYTES."""
    values = np.arange(np.prod(shape)).reshape(shape) % 7 - 3
    values = values > 0 if dtype == "bool" else arrays.cast(values, dtype)
    block = arrays.encode(values, as_base64=True)
    assert len(block["base64"]) > run_json.BIG_TEXT_BYTES
    return {**block, **changes}


@pytest.mark.parametrize("dtype", arrays.DTYPES)
def test_long_base64_texts_are_decoded_from_the_body(dtype):
    """Blocks of weights, inputs and targets, keys in any order, come as NumPy read alike."""
    block = big_block(dtype)
    shuffled = {"base64": block["base64"], "shape": block["shape"], "dtype": dtype}
    body = json.dumps({"weights": {"d": {"kernel": block, "bias": [1.5, 2]}}, "steps": [
        {"kind": "fit", "inputs": {"x": shuffled}, "targets": {"y": block}}]}, indent=1).encode()
    assert body.count(b'"base64": "') == 3 and body.count(b'"\\u0000') == 0
    parsed = run_json.parse(body)
    for array in (parsed["weights"]["d"]["kernel"], parsed["steps"][0]["inputs"]["x"], parsed["steps"][0]["targets"]["y"]):
        assert isinstance(array, np.ndarray) and array.dtype.name == dtype and array.flags.writeable
    assert_read_alike(body, fast=True)
    assert_read_alike(body.replace(b'": "', b'"  :\n "'), fast=True)


@pytest.mark.parametrize("change", [
    {"base64": "@" + big_block()["base64"][1:]}, {"base64": big_block()["base64"][:-1]},  # not base64
    {"base64": big_block("bool", (3 * 30_000,))["base64"] + "="},  # padding only the standard library lets pass
    {"base64": big_block()["base64"][:1000] + "\n" + big_block()["base64"][1000:]},
    {"shape": [200, 401]}, {"shape": [-200, -400]}, {"shape": [200.0, 400]}, {"shape": [True, 400]}, {"shape": "200"},
    {"dtype": "int16"}, {"dtype": 3}, {"extra": 1},
])
def test_long_base64_blocks_that_do_not_fit_are_read_as_before(change):
    block = big_block("bool", (3 * 30_000,)) if "=" in change.get("base64", "")[-1:] else big_block()
    assert_read_alike(step_body(json.dumps({**block, **change})))


def test_long_base64_texts_that_are_not_valid_json_are_refused_as_before():
    """A control character, invalid UTF-8, a quote: the old way's error (or document)."""
    text = big_block()["base64"].encode()
    for bad in (b"\x01", b"\x00", b"\n", b"\xff", b"\xc3\xa9", b'"'):
        body = step_body('{"dtype": "float32", "shape": [200, 400], "base64": "TEXT"}').replace(
            b"TEXT", text[:500] + bad + text[500:])
        assert_read_alike(body)


def test_long_base64_texts_elsewhere_are_read_as_before():
    block = big_block()
    for body in [{"graph": {"nodes": [{"id": "x", "params": {"base64": block["base64"]}}]}, "steps": []},
                 {"steps": [{"kind": "predict", "inputs": {"x": {"inner": block}}}]},
                 {"steps": [{"kind": "predict", "inputs": {"x": [block]}}]}, {"base64": block["base64"]}, [block]]:
        text = json.dumps(body).encode()
        assert run_json.parse(text) == run_json.loads(text)
    twice = step_body(json.dumps(block)[:-1] + ', "base64": "AACAPw=="}')
    assert_read_alike(twice)
    assert run_json.parse(twice)["steps"][0]["inputs"]["x"]["base64"] == "AACAPw=="


@pytest.fixture(params=["nncards' reader", "simdjson"])
def long_arrays_reader(request, monkeypatch):
    """Long arrays read by nncards' C++ reader (built now if need be), or by simdjson (the fallback
    where it cannot be built)."""
    if request.param == "simdjson":
        monkeypatch.setattr(number_grid, "ready", lambda: None)
    else:
        assert number_grid.library() is not None, "nncards' number reader does not build here"
    return request.param


@pytest.fixture
def small_pieces(monkeypatch, long_arrays_reader):
    """Arrays longer than 40 bytes of text are parsed in pieces, read 80 bytes at a time by nncards'
    reader; how many pieces each array took."""
    monkeypatch.setattr(run_json, "PIECE_BYTES", 40)
    monkeypatch.setattr(number_grid, "GROUP_BYTES", 80)
    pieces = []
    real = run_json._numbers_in_pieces
    monkeypatch.setattr(run_json, "_numbers_in_pieces", lambda body, bounds, *rest: (pieces.append(len(bounds)), real(body, bounds, *rest))[1])
    return pieces


LISTS = [
    "[[1.5, 2], [3, 4]]", "[[1, 2], [3, 4]]", "[1e5, 1E5, 1e+5, 1E-5, 2.5e-300, 4.9e-324, 1e-400, 1.7976931348623157e308]",
    "[-0.0, 0.0, -0.0e3]", f"[{2**53 + 1}, {2**63 - 1}, {-2**63}]", "[[[[[[[[1]]]]]]]]", "[" * 40 + "1" + "]" * 40,
    "[[[]], [[]]]", "[[1, 2], [3]]", "[[1, 2], [3, 4, 5]]", "[[1], []]", "[1, [2]]", "[[1], 2]", "[[1, 2], [3, [4]]]",
    '[1, "NaN"]', "[1, null]", "[true, false]", "[1, true]", "[1, {}]", "[NaN, 1.0]", f"[{2**64}]", f"[{2**63}, -1]",
    f"[{10**20}, 1.5]", "[1e309]",
]


@pytest.mark.parametrize("x", LISTS)
@pytest.mark.parametrize("rows", [1, 3, 12])
def test_arrays_in_pieces_read_alike(small_pieces, x, rows):
    """Rows of any array, whole or malformed, parsed in pieces: read as the whole array is."""
    x = "[" + ", ".join([x] * rows) + "]"
    assert_read_alike(step_body(x))
    assert_read_alike(step_body(x.replace(", ", ",")))
    assert_read_alike(json.dumps(json.loads(step_body(x)), indent=2).encode() if "NaN" not in x else step_body(x))


def test_long_arrays_come_in_pieces(small_pieces):
    generator = np.random.default_rng(9)
    x, y = generator.normal(size=(40, 3, 2)), generator.integers(-9, 9, size=(50,))
    body = json.dumps({"weights": {"d": {"kernel": x.tolist()}}, "steps": [
        {"kind": "fit", "inputs": {"x": x.tolist()}, "targets": {"y": y.tolist()}, "epochs": 1},
        {"kind": "predict", "inputs": {"x": x[:20].tolist()}}]}).encode()
    assert_read_alike(body, fast=True)
    assert len(small_pieces) == 4 and min(small_pieces) > 1
    parsed = run_json.parse(body)
    assert parsed["steps"][0]["targets"]["y"].dtype == np.int64 and parsed["steps"][1]["inputs"]["x"].shape == (20, 3, 2)
    mixed = json.dumps({"steps": [{"kind": "predict", "inputs": {"x": [[1, 2]] * 30 + [[0.5, 2]]}}]}).encode()
    assert run_json.parse(mixed)["steps"][0]["inputs"]["x"].dtype == np.float64
    assert_read_alike(mixed, fast=True)


@pytest.mark.parametrize("x", [
    "[" + " " * 60 + ", 1]", "[1, 2, 3" + " " * 60 + ",, 4]", "[[1, 2], x[3, 4]]", "[[1, 2], 5, [3, 4]]" * 1,
    "[" + "[1, 2], " * 20 + "[3, 4],, [5, 6]]", "[" + "[1, 2], " * 20 + "[3, 4]], [[5, 6]]", "[" + "[1, 2], " * 20 + "[3, 4]]]",
    "[" + "[1, 2], " * 20 + "[3, 4]}", "[" + "[1, 2], " * 20 + "[[3], 4]]", "[" + "1, " * 30 + "2",
])
def test_malformed_long_arrays_are_refused_as_before(small_pieces, x):
    assert_read_alike(step_body(x))


def test_long_arrays_elsewhere_are_read_as_before(small_pieces):
    long = [[1.5, 2]] * 30
    for body in [{"graph": {"nodes": [{"id": "x", "params": {"shape": long}}]}, "steps": []},
                 {"steps": [{"kind": "predict", "inputs": {"x": {"dtype": "float32", "shape": [2], "base64": long}}}]},
                 {"steps": [{"kind": "predict", "inputs": [long]}]}, {"x": long}]:
        text = json.dumps(body).encode()
        assert repr(run_json.parse(text)) == repr(run_json.loads(text))


def test_an_array_longer_than_a_piece_reads_alike(monkeypatch, long_arrays_reader):
    """At the real piece size: an array of some 3 MiB of text comes in pieces, as the whole reads."""
    pieces = []
    real = run_json._numbers_in_pieces
    monkeypatch.setattr(run_json, "_numbers_in_pieces", lambda body, bounds, *rest: (pieces.append(len(bounds)), real(body, bounds, *rest))[1])
    x = np.random.default_rng(4).normal(size=(800, 100, 2))
    body = step_body(json.dumps(x.tolist()))
    assert len(body) > 3 * run_json.PIECE_BYTES
    parsed = run_json.parse(body)["steps"][0]["inputs"]["x"]
    assert len(pieces) == 1 and pieces[0] >= 3 and parsed.dtype == np.float64 and np.array_equal(parsed, x)


def test_leading_members_are_those_before_the_arrays_read_whole_as_the_old_way_reads_them():
    before = frozenset({"steps", "weights"})
    graph = {"nodes": [{"id": "x", "card": "input", "params": {"shape": [2], "name": "é \" \\ [{"}}], "edges": []}
    body = (b' {\n "graph" :' + json.dumps(graph, ensure_ascii=False).encode() + b' , "seed":71,"steps": [[1, 2]],'
            b' "distribution": null}')
    assert run_json.leading_members(body, before) == {"graph": graph, "seed": 71}
    for cut in range(len(body)):  # a body cut anywhere: the members it holds whole, as they are
        members = run_json.leading_members(body[:cut], before)
        assert members in ({}, {"graph": graph}, {"graph": graph, "seed": 71}), cut
    assert run_json.leading_members(b'{"steps": [], "graph": {}}', before) == {}
    assert run_json.leading_members(b'{"graph": {}, "graph": {"nodes": []}}', before) == {}  # the old way keeps the last
    assert run_json.leading_members(b'[{"graph": {}}]', before) == {}
    assert run_json.leading_members(b'{"seed": 1, "graph": {}}', before) == {"seed": 1, "graph": {}}
    assert run_json.leading_members(b'{"graph": ' + b"[" * 100_000, before) == {}  # too deep for Python: not read


def random_number_texts(generator, count: int) -> list[str]:
    """JSON number texts of every kind: any double's shortest text and longer ones (huge, tiny,
    subnormal, negative zero), decimals of up to 40 digits with exponents past the doubles' range
    both ways, int64 integers and smaller ones, and the edges of rounding."""
    doubles = generator.integers(0, 2**64, size=count, dtype=np.uint64).view(np.float64)
    subnormals = (generator.integers(0, 2**52, size=count, dtype=np.uint64)
                  | (generator.integers(0, 2, size=count, dtype=np.uint64) << np.uint64(63))).view(np.float64)
    texts = []
    for number in range(count):
        kind = generator.integers(0, 8)
        value = float(doubles[number] if kind < 4 else subnormals[number])
        if kind in (0, 4) and math.isfinite(value):
            texts.append(repr(value))
        elif kind in (1, 5) and math.isfinite(value):
            texts.append(("%.17e", "%.25g", "%.40E", "%.3e")[generator.integers(0, 4)] % value)
        elif kind == 2:
            texts.append(str(int(generator.integers(-2**63, 2**63, dtype=np.int64)) // 10 ** int(generator.integers(0, 19))))
        else:
            digits = "".join(map(str, generator.integers(0, 10, size=generator.integers(1, 41))))
            integer, fraction = digits[:generator.integers(1, len(digits) + 1)].lstrip("0") or "0", digits[len(digits) // 2:]
            texts.append("-" * int(generator.integers(0, 2)) + integer + ("." + fraction if generator.random() < 0.7 else "")
                         + (("e", "E")[generator.integers(0, 2)] + ("", "+", "-")[generator.integers(0, 3)]
                            + str(generator.integers(0, 340)).zfill(int(generator.integers(1, 4))) if generator.random() < 0.6 else ""))
    return texts + ["-0", "-0.0", "0e0", "-0.0e-0", "4.9e-324", "2.4703282292062328e-324", "2.4703282292062327e-324",
                    "2.2250738585072011e-308", "1.7976931348623157e308", "1.7976931348623158e308", str(2**53 + 1),
                    str(2**63 - 1), str(-2**63), "0.1e-5", "9007199254740993.0", "123456789012345678901234567890e-20"]


def test_numbers_of_every_kind_read_to_the_bit_as_before(small_pieces, long_arrays_reader, monkeypatch):
    """Thousands of random number texts in long arrays (rows of 1 to 6 numbers, all kinds mixed, or
    integers alone): the same dtype and bits as the old way and as json.loads with NumPy, and, when
    no value is past the doubles' range, read by nncards' reader itself."""
    read = []
    real = number_grid.read
    monkeypatch.setattr(number_grid, "read", lambda body, bounds, *rest: (grid := real(body, bounds, *rest), read.append(grid))[0])
    generator = np.random.default_rng(11)
    texts = random_number_texts(generator, 12_000)
    at = 0
    while at < len(texts):
        columns, rows = int(generator.integers(1, 7)), int(generator.integers(2, 30))
        row_texts = texts[at:at + columns * rows]
        if generator.random() < 0.1:
            row_texts = [str(int(generator.integers(-2**63, 2**63, dtype=np.int64)))] * len(row_texts)
        at += columns * rows
        rows = len(row_texts) // columns
        x = "[" + ", ".join("[" + ", ".join(row_texts[row * columns:(row + 1) * columns]) + "]" for row in range(rows)) + "]"
        in_range = all(-2**63 <= int(text) < 2**63 if text.lstrip("-").isdigit()
                       else math.isfinite(float(text)) and (float(text) != 0 or Decimal(text) == 0) for text in row_texts)
        assert_read_alike(step_body(x), fast=in_range or None)
        if in_range:
            expected, parsed = np.asarray(json.loads(x)), run_json.parse(step_body(x))["steps"][0]["inputs"]["x"]
            assert parsed.dtype == expected.dtype and parsed.tobytes() == expected.tobytes(), x
        if long_arrays_reader != "simdjson":
            assert (read[-1] is not None) == in_range, x
    assert long_arrays_reader == "simdjson" or sum(grid is not None for grid in read) > len(read) // 2


def test_numbers_of_17_to_19_digits_and_ties_between_doubles_read_to_the_bit(small_pieces):
    """The digits nncards' reader gathers while they fit 64 bits, a power of ten up to 27 either way,
    and decimal ties between two doubles (which its fast ways leave to from_chars), as float() reads them."""
    generator = np.random.default_rng(15)
    values = generator.random(4000) * 10.0 ** generator.integers(-27, 28, size=4000)
    texts = [("%.17g", "%.18g", "%.19g", "%.16e", "%.18e")[number % 5] % value for number, value in enumerate(values)]
    ties = [2**53 + 2 * k + 1 for k in range(200)] + [2**60 + 2**7 * (2 * k + 1) for k in range(200)]
    texts += [f"{tie}.0" for tie in ties] + [f"{tie}e0" for tie in ties] + [f"{tie * 10}e-1" for tie in ties]
    texts += [f"{tie}.0000000000000000000000001" for tie in ties[:50]] + [f"-{tie}.0" for tie in ties[:50]]
    texts += [f"{tie}.001" for tie in ties[:200]] + [f"{tie - 1}.999" for tie in ties[:200]]  # 19 digits, a hair off
    x = "[" + ", ".join(f"[{a}, {b}]" for a, b in zip(texts[::2], texts[1::2])) + "]"
    parsed = run_json.parse(step_body(x))["steps"][0]["inputs"]["x"]
    expected = np.array([float(text) for text in texts]).reshape(-1, 2)
    assert parsed.dtype == np.float64 and parsed.tobytes() == expected.tobytes()


@pytest.mark.parametrize("x", [
    "[01, 2]", "[1, 02.5]", "[-01]", "[+1, 2]", "[.5, 1]", "[1., 2]", "[1.e5]", "[1e, 2]", "[1e+, 2]", "[1E-]", "[--1]",
    "[-, 1]", "[1.5.2]", "[1e5e5]", "[0x10]", "[1_000]", "[NaN, 1]", "[Infinity, 2]", "[-Infinity]", "[nan]", "[inf]",
    "[1 2]", "[1,, 2]", "[1, 2,]", "[, 1]", "[1; 2]", "[1, 2]]", "[[1, 2]", "[1, 2}", "{1, 2]", "[1, [2]]", "[[1], 2]",
    "[[1, 2], [3]]", "[[1], [2, 3]]", "[[[1]], [2]]", "[[1], [[2]]]", "[[], []]", "[[1], []]", "[1, true]", "[1, null]",
    '[1, "2"]', "[1, 1e400]", "[1, -1e400]", "[1, 1e-400]", f"[{2**63}, 1]", f"[{-2**63 - 1}, 1.5]", f"[{2**64}]",
    "[1\u00a0, 2]", "[1,\v2]", "[\u0661, 2]",
])
def test_malformed_numbers_and_grids_are_refused_as_before(small_pieces, x):
    """Each fault in a long array (repeated into rows that come in several pieces) gets the old way's
    answer: its error, or its document (a number past the doubles' range, a ragged array)."""
    for rows in ([x] * 12, ["[1, 2]"] * 6 + [x] + ["[3, 4]"] * 6):
        assert_read_alike(step_body("[" + ", ".join(rows) + "]"))
    assert_read_alike(step_body(x + " " * 60))


def test_a_body_parsed_with_the_structure_and_quotes_found_as_it_arrived_reads_alike(small_pieces):
    generator = np.random.default_rng(14)
    x = generator.normal(size=(30, 2)).tolist()
    block = {"dtype": "float32", "shape": [2], "base64": "AACAPwAAgD8="}
    for document in ({"steps": [{"kind": "fit", "inputs": {"x": x}, "targets": {"y": x}}], "seed": 1},
                     {"weights": {"d": {"kernel": x}}, "steps": [{"kind": "predict", "inputs": {"x": block}}]},
                     {"steps": [{"kind": "predict", "inputs": {"x": x[:-1] + [[1.5]]}}]}):
        body = json.dumps(document).encode()
        reader = run_json.SkeletonReader()
        for piece in pieces_of(body, generator):
            reader.feed(piece)
        assert repr(read_as_before(run_json.parse(body, reader.skeleton(body), reader.quote_positions()))) == \
            repr(read_as_before(run_json.loads(body)))


def test_bodies_cut_anywhere_are_refused_as_before(small_pieces):
    body = step_body(json.dumps(np.random.default_rng(2).normal(size=(12, 3, 2)).tolist()))
    generator = np.random.default_rng(6)
    for cut in [*generator.integers(0, len(body), size=150), len(body) - 1, len(body) - 2, len(body) - 3]:
        assert_read_alike(body[:cut])
        assert_read_alike(body[:cut] + b"]" * 4 + b"}" * 3)


def test_without_a_compiler_simdjson_reads_long_arrays(tmp_path, monkeypatch):
    """No compiler: nothing is built, and long arrays are read as ever (simdjson)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(tmp_path / "no-compiler"))
    monkeypatch.setattr(run_json, "PIECE_BYTES", 40)
    number_grid.READER.forget()
    try:
        assert number_grid.library() is None and number_grid.ready() is None
        x = np.random.default_rng(8).normal(size=(30, 4))
        body = step_body(json.dumps(x.tolist()))
        assert_read_alike(body, fast=True)
        assert np.array_equal(run_json.parse(body)["steps"][0]["inputs"]["x"], x)
        assert not list((tmp_path / "cache").glob("nncards/ops/*.so"))
    finally:
        number_grid.READER.forget()  # the next test loads the real library again


def test_a_server_builds_the_reader_as_it_starts(tmp_path):
    """A server with an empty cache folder builds nncards' number reader without being sent anything."""
    cache = tmp_path / "cache"
    server = LiveServer(tmp_path / "data", "--no-warm-up", env={**os.environ, "XDG_CACHE_HOME": str(cache)}).start()
    try:
        deadline = time.monotonic() + 120
        while not list(cache.glob("nncards/ops/number_grid-*.so")) and time.monotonic() < deadline:
            time.sleep(0.1)
        [library] = cache.glob("nncards/ops/number_grid-*.so")
        assert library.name == number_grid.library_path().name  # the same source, flags and CPU
    finally:
        server.stop()


def test_a_float32_inputs_long_float_arrays_come_as_their_float32_cast_to_the_bit(small_pieces, long_arrays_reader):
    """`float32_inputs` names the nodes whose step inputs the caller casts to float32: nncards' reader
    reads their long float arrays as float32 at once, the float64 array's NumPy cast to the bit
    (numbers of every kind, and decimals at, and a hair either side of, halfway between two
    floats: a double rounding); an integer grid, targets and other nodes' arrays come as before,
    and so does all of it where simdjson reads the arrays."""
    generator = np.random.default_rng(17)
    texts = [text for text in random_number_texts(generator, 3000)
             if not text.lstrip("-").isdigit() and math.isfinite(float(text)) and (float(text) != 0 or Decimal(text) == 0)]
    floats = generator.random(600, dtype=np.float32) * np.float32(2.0) ** generator.integers(-140, 128, 600)
    halfway = (floats.astype(np.float64) + np.nextafter(floats, np.float32(np.inf)).astype(np.float64)) / 2
    texts += [repr(float(value)) for middle in halfway for value in (middle, np.nextafter(middle, 0), np.nextafter(middle, np.inf))]
    # A few of the double's steps either side of halfway: the reader's fast way for floats tells them from halfway.
    near = [middle + sign * steps * np.spacing(middle) for middle in halfway for steps in range(0, 7) for sign in (-1, 1)]
    texts += [repr(float(value)) for value in near]
    # Decimals whose 19 digits as a double, divided or multiplied by their power of ten, give a double
    # on the other side of halfway between two floats than their own double (found by a search).
    texts += ["3.360912919044495018e+0", "3.434946679687499541e+4", "2.361590347290039177e+2", "4.630154848098755267e+0",
              "4.314559231999999719e+9", "1.357801284790039197e+2", "6.657650927081704951e-3", "8.227277812500000356e+5",
              "2.643060274810061020e+16", "1.099613440000000079e+10", "4.026910247802734103e+2", "9.048818664550781691e+2"]
    # Past halfway by less than half a double's step: the double is the halfway point, and a float from the decimal would round up.
    texts += [format(Decimal(float(middle)) + Decimal(float(np.spacing(middle))) / 1000, ".25e") for middle in halfway]
    texts += ["0.1", "1", "-2", "16777217", "3.4028235677973366e38", "1e39", "-1e39", "1e-46", "7e-46"]
    x = "[" + ", ".join(f"[{a}, {b}]" for a, b in zip(texts[0::2], texts[1::2])) + "]"
    integers = "[" + ", ".join(f"[{n}, {n + 1}]" for n in range(0, 400, 2)) + "]"
    body = (f'{{"graph": {{"nodes": [], "edges": []}}, "steps": [{{"kind": "fit", "inputs": {{"x": {x}, "w": {x}, '
            f'"n": {integers}}}, "targets": {{"x": {x}}}}}, {{"kind": "predict", "inputs": {{"x": {integers}}}}}]}}').encode()
    asked = []
    with np.errstate(over="ignore"):
        parsed = run_json.parse(body, float32_inputs=lambda graph: (asked.append(graph), {"x", "n"})[1])
        expected = np.array(json.loads(x), np.float64)
        assert asked == [{"nodes": [], "edges": []}]
        fit, predict = parsed["steps"]
        if long_arrays_reader == "simdjson":
            assert fit["inputs"]["x"].dtype == np.float64 and fit["inputs"]["x"].tobytes() == expected.tobytes()
        else:
            assert fit["inputs"]["x"].dtype == np.float32
            assert fit["inputs"]["x"].tobytes() == expected.astype(np.float32).tobytes()
        for other in (fit["inputs"]["w"], fit["targets"]["x"]):
            assert other.dtype == np.float64 and other.tobytes() == expected.tobytes()
        for grid in (fit["inputs"]["n"], predict["inputs"]["x"]):
            assert grid.dtype == np.int64 and grid.tolist() == json.loads(integers)
