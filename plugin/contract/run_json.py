"""A RUN's JSON text parsed with its arrays straight into NumPy, never through Python floats.

A run request may carry tens of MiB of numbers as nested lists. simdjson parses the whole text
(validating it as strictly as orjson) and copies each array of the request (a step's inputs and
targets, initial weights) into a NumPy buffer in C; the rest of the document becomes Python
values. An array comes out exactly as `arrays.decode` would make it of the list orjson reads:
int64 when every element is an integer, float64 otherwise, float64 when empty.

Whether every such array is rectangular (a ragged one must be refused as today) is checked on
the text: stripped of numbers and white space, and its strings emptied, the document must read
exactly as it would with every array a full grid of its shape. Anything the fast way is not sure
of takes the old way, whose answers (errors included) are the contract: a text simdjson refuses
(JSON's NaN tokens, integers past 64 bits, malformed text: orjson, then the standard library,
read it and say why), a document whose skeleton differs (a ragged array), and, left as lists for
`arrays.decode`, arrays of booleans, of strings, or of integers past int64.

A base64 block's text is not handed to simdjson when it is long (it would copy it twice: into its
own buffer, then into a Python str): simdjson reads the text with a placeholder in its place, and
pybase64 decodes it straight from the body into the array `arrays.decode` would make of the block.
A placeholder holds an escape, so no string of a text without backslash can be mistaken for one.
When a block cannot be decoded so (its text is not base64, or its dtype, shape or length do not
fit, or the string is not a block's text at all), the old way reads the body and says why.

A long array of numbers is set aside too, and parsed in pieces of rows of its first dimension by
one parser: a parser for 126 MB of text spent half its time faulting in its buffers, and it held
the GIL (the event loop) throughout. Each piece, and the text around the arrays, is checked
by simdjson; a guess at the rows that is wrong makes one of them invalid, and the old way answers.
Where nncards' own reader of number grids is built (`number_grid`: C++, compiled on the machine),
it reads the pieces instead, on as many threads as there are cores and without the GIL; what it is
not sure of, simdjson reads as above.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Callable, Collection
from itertools import repeat
from typing import Any

import numpy as np
import orjson
import simdjson

from nncards.contract import arrays, number_grid
from nncards.contract.run import ARRAY_FIELDS

# What a number and white space are made of: deleted from the text, they leave its structure.
NUMBER_AND_SPACE = b"0123456789.eE+- \t\n\r"
# A JSON string, unrolled (no alternation per character); its escapes survive the deletion above
# (their letters are none of e, E or digits), so it still finds every string of the skeleton.
STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
FEW_QUOTES = 10_000  # more strings than that: the expression's way
MAX_DIMENSIONS = 32  # deeper lists go the old way, for NumPy's own answer
BIG_TEXT_BYTES = 64 * 2**10  # a base64 block's text longer than this is decoded from the body
PLACEHOLDER = "\x00"  # what simdjson reads of b'"\\u0000<n>"', standing for the n-th text set aside
# An array of numbers whose text is longer than this is parsed in pieces of about this size, by one
# parser: its buffers are allocated once, for a piece, not for the whole text (faulting them in took
# half of a 126 MB parse), and the GIL is let go between pieces (a parse never lets it go). A parser
# holds some 11 bytes of buffers per byte of its pieces: 11 MB to fault in for 1 MiB pieces, 92 MB
# for 8 MiB (126 MB of numbers parsed in 185-192 ms of CPU instead of 236-259 ms).
PIECE_BYTES = 2**20
ARRAY_PLACEHOLDER = "\x01"  # what simdjson reads of b'"\\u0001<n>"', standing for the n-th array set aside
WHITE_SPACE = b" \t\n\r"
NATIVE_STRETCH_BYTES = 4096  # a shorter stretch outside strings: `bytes.translate` costs less than a C call
BLOCK_KEYS = {"dtype", "shape", "base64"}


def skeleton(text: bytes) -> bytes:
    """The structure of a JSON text: numbers and white space deleted, every string emptied (the
    expression walks a string a character at a time: a body that arrives over HTTP is read by
    `SkeletonReader`, which never reads a string's inside, and comes here only when it must)."""
    return STRING.sub(b'""', text.translate(None, NUMBER_AND_SPACE))


class SkeletonReader:
    """`skeleton` of a text built while the text arrives in pieces, so that little is left to do
    when its last piece comes.

    Without a backslash, quotes pair up across pieces as within one text: the text outside strings
    has its numbers and white space deleted as it comes (a context-free deletion), each string is
    emptied at its closing quote, and the inside of a string is never read past its quotes (a 32 MB
    base64 block costs a `bytes.find`). A backslash (escapes move string boundaries), more than
    FEW_QUOTES quotes (Python steps per string) or a string still open at the end leave the work to
    `skeleton` of the whole text. A long stretch outside strings is read by nncards' number reader
    where it is built (`number_grid.without_numbers`: three to four times faster than `bytes.translate`,
    on the event loop's time)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] | None = []  # None: `skeleton(text)` decides
        self.quotes = 0
        self.in_string = False
        self.escaped = False
        self.scratch = bytearray()  # number_grid.without_numbers's output, kept from piece to piece
        self.quotes_at: list[int] = []  # where the text's quotes are
        self.fed = 0  # bytes fed before the current piece

    def feed(self, text: bytes | bytearray, start: int = 0, end: int | None = None) -> None:
        """Read the next piece: `text[start:end]` (a range of a buffer is read where it lies, not copied)."""
        end = len(text) if end is None else end
        if self.escaped:
            return
        if text.find(b"\\", start, end) >= 0:
            self.escaped, self.pieces = True, None
            return
        if self.pieces is None:
            return
        origin, found = start, text.find(b'"', start, end)
        while found >= 0:
            self.quotes += 1
            if self.quotes > FEW_QUOTES:
                self.pieces = None
                return
            self.quotes_at.append(self.fed + found - origin)
            self.pieces.append(b'""' if self.in_string else self._without_numbers(text, start, found))
            self.in_string, start = not self.in_string, found + 1
            found = text.find(b'"', start, end)
        if not self.in_string:
            self.pieces.append(self._without_numbers(text, start, end))
        self.fed += end - origin

    def _without_numbers(self, chunk: bytes | bytearray, start: int, end: int) -> bytes:
        if end - start > NATIVE_STRETCH_BYTES and \
                (kept := number_grid.without_numbers(chunk, start, end, self.scratch)) is not None:
            return kept
        return chunk[start:end].translate(None, NUMBER_AND_SPACE)

    def skeleton(self, text: bytes) -> bytes | None:
        """`skeleton(text)` of the text fed (given whole), None when it holds a backslash."""
        if self.escaped:
            return None
        if self.pieces is None or self.in_string:
            return skeleton(text)
        return b"".join(self.pieces)

    def quote_positions(self) -> list[int] | None:
        """`_quote_positions` of the text fed, found as it arrived (the body is not scanned again);
        None when it holds a backslash or more than FEW_QUOTES quotes."""
        return None if self.escaped or self.pieces is None else self.quotes_at


LEADING_BYTES = 2**20  # how far into a body `leading_members` reads
_DECODER = json.JSONDecoder()


def leading_members(body: bytes, before: frozenset[str]) -> dict[str, Any]:
    """The members a JSON object text opens with, up to its first key in `before` (or its end), as
    the standard library reads them: those whole within the first LEADING_BYTES only, without the
    rest of the text (a run request's graph and seed, read before the arrays that follow them are
    parsed). Empty when the text does not open an object, or gives a key twice before that point
    (the old way keeps the last value)."""
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(body[:LEADING_BYTES])  # a cut character dropped
    members: dict[str, Any] = {}
    try:
        at = _skip_space(text, 0)
        if text[at] != "{":
            return {}
        at += 1
        while text[(at := _skip_space(text, at))] == '"':
            key, at = _DECODER.raw_decode(text, at)
            at = _skip_space(text, at)
            if key in before or text[at] != ":":
                break
            if key in members:
                return {}
            value, at = _DECODER.raw_decode(text, _skip_space(text, at + 1))
            if text[(at := _skip_space(text, at))] not in ",}":  # past the end: a number may be cut short
                break
            members[key] = value
            if text[at] == "}":
                break
            at += 1
    except (ValueError, IndexError, RecursionError):  # cut short, or not JSON: what was read whole stays
        pass
    return members


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\n\r":
        at += 1
    return at


def _quote_positions(text: bytes) -> list[int]:
    """Where the first FEW_QUOTES + 1 quotes are (bytes.find is memchr: several times faster than
    a regular expression's scan or bytes.count)."""
    positions, found = [], text.find(b'"')
    while found >= 0 and len(positions) <= FEW_QUOTES:
        positions.append(found)
        found = text.find(b'"', found + 1)
    return positions


def parse(body: bytes, structure: bytes | None = None, quotes: list[int] | None = None,
          float32_inputs: Callable[[Any], Collection[str]] | None = None) -> Any:
    """The JSON document of a RUN request, its arrays of numbers as NumPy arrays (`structure`: the
    body's `skeleton`, `quotes`: its `_quote_positions` of a body without backslash, when the
    caller has them: a SkeletonReader's). `float32_inputs`, given the document's `graph` member,
    names the nodes whose step inputs the caller casts to float32: a long float array of theirs
    that nncards' reader reads comes as that cast of the float64 array, read so at once."""
    try:
        return _fast(body, structure, quotes, float32_inputs)
    except (ValueError, RuntimeError):  # simdjson refuses the text (an integer of 21 digits or more: a
        return loads(body)  # RuntimeError), NotSure, or nesting past Python's stack (RecursionError)


def loads(body: bytes) -> Any:
    """The document as orjson reads it; JSON's NaN tokens and integers past 64 bits by the standard library."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


class NotSure(ValueError):
    """The fast way cannot tell that its document is the one the old way would read."""


def _fast(body: bytes, structure: bytes | None, quotes: list[int] | None,
          float32_inputs: Callable[[Any], Collection[str]] | None) -> Any:
    """The document with its arrays in NumPy; `NotSure` where the old way must answer."""
    text, texts, arrays_in_pieces = _set_aside(body, quotes)
    root = simdjson.Parser().parse(text)
    if not isinstance(root, simdjson.Object):
        raise NotSure("not a RUN: no arrays to read")
    document = {}
    for key, value in _members(root):
        if key == "weights" and isinstance(value, simdjson.Object):
            document[key] = {node: _array_group(group) for node, group in _members(value)}
        elif key == "steps" and isinstance(value, simdjson.Array):
            document[key] = [_step(step) for step in value]
        else:
            document[key] = _plain(value)
    if arrays_in_pieces:
        as_float32 = _float32_arrays(document, float32_inputs) if float32_inputs is not None else set()
        _replace_placeholders(document, ARRAY_PLACEHOLDER, len(arrays_in_pieces), in_block=False,
                              replacement=lambda number, value: _numbers_in_pieces(body, arrays_in_pieces[number],
                                                                                   number in as_float32))
    # Without a NumPy array, the document is orjson's: nothing to check.
    if any(isinstance(value, np.ndarray) for group in _array_groups(document) for value in group.values()) \
            and not _is_skeleton_of(document, skeleton(body) if structure is None else structure, len(body)):
        raise NotSure("an array is ragged, or holds arrays beside numbers")
    if texts:
        with memoryview(body) as view:
            _replace_placeholders(document, PLACEHOLDER, len(texts), in_block=True,
                                  replacement=lambda number, block: _decoded(block, view[slice(*texts[number])]))
    return document


def _set_aside(body: bytes, quotes: list[int] | None = None) -> tuple[bytes, list[tuple[int, int]],
                                                                    list[list[tuple[int, int]]]]:
    """The body with placeholders for what simdjson need not read whole: each long string that is
    the value of a `"base64"` key (where its text lies), and each long array of numbers that is the
    value of a key (where its pieces' texts lie: without their brackets, and without the commas
    between them)."""
    if quotes is None:  # two scans of the whole body (30 ms for 126 MiB): a SkeletonReader found them as it arrived
        quotes = _quote_positions(body) if b"\\" not in body else []
    if len(quotes) > FEW_QUOTES or len(quotes) % 2:
        return body, [], []
    pieces, texts, arrays_in_pieces, done = [], [], [], 0
    for at in range(0, len(quotes), 2):  # without escapes, the k-th string lies between quotes 2k and 2k+1
        start, end = quotes[at], quotes[at + 1]
        if at and end - start > BIG_TEXT_BYTES and body[quotes[at - 2] + 1:quotes[at - 1]] == b"base64" \
                and body[quotes[at - 1] + 1:start].strip(WHITE_SPACE) == b":":
            pieces += [body[done:start], b'"\\u0000%d"' % len(texts)]
            texts.append((start + 1, end))
            done = end + 1
        elif (array := _array_after(body, end + 1, quotes[at + 2] if at + 2 < len(quotes) else len(body))):
            opening, closing, bounds = array
            pieces += [body[done:opening], b'"\\u0001%d"' % len(arrays_in_pieces)]
            arrays_in_pieces.append(bounds)
            done = closing + 1
    if not (texts or arrays_in_pieces):
        return body, [], []
    return b"".join([*pieces, body[done:]]), texts, arrays_in_pieces


def _array_after(body: bytes, start: int, stop: int) -> tuple[int, int, list[tuple[int, int]]] | None:
    """Where the array of numbers that is the value of the key ending at `start` opens and closes, and
    its pieces, when its text is longer than a piece. Read as a full grid whose dimensions are the
    brackets it opens with, which simdjson then checks: a guess that is wrong leaves a text whose
    brackets do not pair up, or a piece that is not an array, or one of no element."""
    colon = _skip(body, start, stop, WHITE_SPACE)
    if stop - colon <= PIECE_BYTES or body[colon:colon + 1] != b":":
        return None
    opening = _skip(body, colon + 1, stop, WHITE_SPACE)
    inner = _skip(body, opening, stop, b"[" + WHITE_SPACE)
    dimensions = body.count(b"[", opening, inner)
    if not 0 < dimensions <= MAX_DIMENSIONS or inner == stop or body[inner] not in b"-0123456789":
        return None
    last = stop - 1  # the last digit of the last number: after it, brackets and braces up to the next key
    while last > inner and body[last] in b"[]{}," + WHITE_SPACE:
        last -= 1
    closing = _skip(body, last + 1, stop, WHITE_SPACE)
    for _ in range(dimensions - 1):
        closing = _skip(body, closing + 1, stop, WHITE_SPACE)
    if body[closing:closing + 1] != b"]" or body.count(b"]", last + 1, closing + 1) != dimensions:
        return None
    # A row of the first dimension ends where its last number is followed by one bracket fewer.
    separator, bounds, first = b"]" * (dimensions - 1) + b",", [], opening + 1
    while (cut := body.find(separator, first + PIECE_BYTES, closing)) >= 0:
        comma = cut + len(separator) - 1
        bounds.append((first, comma))
        first = comma + 1
    return opening, closing, [*bounds, (first, closing)]


def _skip(body: bytes, at: int, stop: int, skipped: bytes) -> int:
    """The first position from `at` (before `stop`) whose byte is not one of `skipped`."""
    while at < stop and body[at] in skipped:
        at += 1
    return at


def _replace_placeholders(document: dict, prefix: str, count: int, *, in_block: bool, replacement) -> None:
    """Each value in an array's place that is a placeholder (`in_block`: a base64 block whose text
    is one) replaced by `replacement(number, value)`. `NotSure` unless all `count` are found so."""
    replaced = 0
    for group in _array_groups(document):
        for key, value in group.items():
            text = (value.get("base64") if isinstance(value, dict) else None) if in_block else value
            if isinstance(text, str) and text.startswith(prefix):
                group[key] = replacement(int(text[len(prefix):]), value)
                replaced += 1
    if replaced != count:
        raise NotSure("a long text or array where no array goes")


def _float32_arrays(document: dict, float32_inputs: Callable[[Any], Collection[str]]) -> set[int]:
    """The numbers of the arrays set aside that are step inputs of the nodes `float32_inputs` names."""
    steps, nodes, numbers = document.get("steps"), float32_inputs(document.get("graph")), set()
    for step in steps if isinstance(steps, list) else []:
        inputs = step.get("inputs") if isinstance(step, dict) else None
        for node, value in inputs.items() if isinstance(inputs, dict) else ():
            if node in nodes and isinstance(value, str) and value.startswith(ARRAY_PLACEHOLDER):
                numbers.add(int(value[len(ARRAY_PLACEHOLDER):]))
    return numbers


def _decoded(block: dict, text: memoryview) -> np.ndarray:
    """The array of a base64 block whose text was set aside; `NotSure` unless the Base64Array model
    reads the block as it is and its text decodes: the old way reads the rest, and says why."""
    dtype, shape = block.get("dtype"), block.get("shape")
    if block.keys() != BLOCK_KEYS or dtype not in arrays.DTYPES or not isinstance(shape, list) \
            or any(type(size) is not int for size in shape):
        raise NotSure("a block the model converts or refuses")
    try:
        return arrays.decode_block(dtype, shape, text)
    except arrays.ArrayError:
        raise NotSure("a block that does not decode") from None


def _numbers_in_pieces(body: bytes, bounds: list[tuple[int, int]], as_float32: bool = False) -> np.ndarray:
    """The array whose pieces' texts lie at `bounds` in the body: read by nncards' own reader where
    it is built and sure of the text (`as_float32`: a float64 array as float32), else each piece
    parsed as an array of the first dimension's rows by one simdjson parser (float64 then, as
    before); `NotSure` where `_numbers` would not make a NumPy array."""
    grid = number_grid.read(body, bounds, as_float32)
    if grid is not None:
        return grid
    parser, staging = simdjson.Parser(), bytearray(2 + max(end - start for start, end in bounds))
    staging[0:1] = b"["
    parts, rows, row_shape = [], 0, None
    with memoryview(body) as source, memoryview(staging) as stage:
        for start, end in bounds:
            stage[1:end - start + 1] = source[start:end]
            stage[end - start + 1] = ord("]")
            piece = parser.parse(stage[:end - start + 2])
            if not isinstance(piece, simdjson.Array) or not len(piece):
                raise NotSure("a piece that is not an array of rows")
            shape = _shape(piece)
            if shape is None or (row_shape is not None and shape[1:] != row_shape):
                raise NotSure("pieces of different shapes")
            rows, row_shape = rows + shape[0], shape[1:]
            values = _values(piece)
            del piece  # the parser is free for the next piece
            if values is None:  # found before the next pieces are parsed for nothing
                raise NotSure("not all numbers")
            parts.append(values)
    if any(part.dtype == np.float64 for part in parts):
        parts = [part.astype(np.float64, copy=False) for part in parts]
    values, shape = np.concatenate(parts), [rows, *row_shape]
    if values.size != math.prod(shape):
        raise NotSure("ragged")
    return (values if values.size else values.astype(np.float64)).reshape(shape)


def _array_groups(document: dict) -> list[dict]:
    """The dicts of arrays of the document: each node's initial weights, each step's inputs and targets."""
    weights, steps = document.get("weights"), document.get("steps")
    groups = list(weights.values()) if isinstance(weights, dict) else []
    for step in steps if isinstance(steps, list) else []:
        groups += [step[field] for field in ARRAY_FIELDS if field in step] if isinstance(step, dict) else []
    return [group for group in groups if isinstance(group, dict)]


def _step(step: Any) -> Any:
    if not isinstance(step, simdjson.Object):
        return _plain(step)
    return {key: _array_group(value) if key in ARRAY_FIELDS else _plain(value) for key, value in _members(step)}


def _array_group(group: Any) -> Any:
    if not isinstance(group, simdjson.Object):
        return _plain(group)
    return {key: _numbers(value) if isinstance(value, simdjson.Array) else _block(value)
            for key, value in _members(group)}


def _block(value: Any) -> Any:
    """A base64 block (keys given twice are the old way's), or anything else given for an array."""
    if isinstance(value, simdjson.Object):
        return {key: _plain(member) for key, member in _members(value)}
    return _plain(value)


def _members(value: simdjson.Object) -> list[tuple[str, Any]]:
    """An object's members, arrays and objects left in simdjson (its `items()` makes Python values of
    them). A key given twice: simdjson finds its first value, orjson keeps the last."""
    keys = list(value.keys())
    if len(set(keys)) != len(keys):
        raise NotSure("a key given twice")
    return [(key, value[key]) for key in keys]


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def _numbers(array: simdjson.Array) -> np.ndarray | list:
    """The array of numbers in NumPy (its shape read along its first elements, checked with the
    skeleton), or as a list where NumPy's rules for Python values must decide."""
    shape = _shape(array)
    values = _values(array) if shape is not None else None
    if values is None or values.size != math.prod(shape):  # not all numbers, too deep, or ragged
        return array.as_list()
    return (values if values.size else values.astype(np.float64)).reshape(shape)


def _shape(array: simdjson.Array) -> list[int] | None:
    """The sizes along the array's first elements; None past MAX_DIMENSIONS."""
    shape, element = [], array
    while isinstance(element, simdjson.Array):
        if len(shape) == MAX_DIMENSIONS:
            return None
        shape.append(len(element))
        element = element[0] if len(element) else None
    return shape


def _values(array: simdjson.Array) -> np.ndarray | None:
    """Every number of the array, flat: int64 when all are integers, float64 otherwise; None when
    not all are numbers (booleans, strings, null, objects) or an integer is past int64."""
    try:
        try:
            return np.frombuffer(array.as_buffer(of_type="i"), np.int64)
        except TypeError:  # not all integers: a float among them, or something else
            return np.frombuffer(array.as_buffer(of_type="d"), np.float64)
    except (TypeError, ValueError):
        return None


def _grid_skeleton(shape: tuple[int, ...]) -> bytes:
    text = b""  # a number
    for size in reversed(shape):
        text = b"[" + b",".join(repeat(text, size)) + b"]"
    return text


def _grid_length(shape: tuple[int, ...]) -> int:
    length = 0
    for size in reversed(shape):
        length = 2 + size * length + max(size - 1, 0)
    return length


SKELETON_BLOCK_BYTES = 2**16  # rows of a grid compared at a time


def _is_skeleton_of(document: Any, structure: bytes, budget: int) -> bool:
    """Whether `structure` is the skeleton the text has when each NumPy array of the document is a
    full grid of its shape. Compared as the document is walked, a block of a grid's rows at a time:
    the skeleton of a 126 MB body's grid, built whole, took some 70 ms, most of it fresh memory.
    The grids may be no longer than `budget` (the text's length: a ragged array's first elements
    can claim a huge shape)."""
    at = 0

    def expect(text: bytes) -> None:
        nonlocal at
        if not structure.startswith(text, at):
            raise _Differs
        at += len(text)

    def grid(shape: tuple[int, ...]) -> None:
        if not shape[0]:
            return expect(b"[]")
        row = _grid_skeleton(shape[1:])
        block_rows = max(1, SKELETON_BLOCK_BYTES // (len(row) + 1))
        following, left = b"," + row, shape[0] - 1  # each row after the first
        expect(b"[" + row)
        if left >= block_rows:
            block = following * block_rows
            while left >= block_rows:
                expect(block)
                left -= block_rows
        expect(following * left + b"]")

    def walk(value: Any) -> None:
        nonlocal budget
        if isinstance(value, dict | list):
            expect(b"{" if isinstance(value, dict) else b"[")
            for number, member in enumerate(value.values() if isinstance(value, dict) else value):
                expect((b"," if number else b"") + (b'"":' if isinstance(value, dict) else b""))
                walk(member)
            return expect(b"}" if isinstance(value, dict) else b"]")
        if isinstance(value, np.ndarray):
            budget -= _grid_length(value.shape)
            if budget < 0:
                raise NotSure("the arrays' shapes claim more than the text holds")
            return grid(value.shape)
        if isinstance(value, str):
            return expect(b'""')
        if value is None:
            return expect(b"null")
        if isinstance(value, bool):
            return expect(b"tru" if value else b"fals")  # their e deleted
        return None  # a number: nothing

    try:
        walk(document)
    except _Differs:
        return False
    return at == len(structure)


class _Differs(Exception):
    """The structure is not the document's skeleton."""
