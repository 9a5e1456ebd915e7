"""Graph validation: every structural problem in one pass, then shapes through Keras.

`analyze` checks a graph without TensorFlow: ids, cards, params, edges, types, cycles, required
inputs, layer names. `trace` then walks the well-formed part in topological order and builds it
symbolically with Keras, which infers the shape of every tensor port; a node that Keras refuses
becomes a problem that names it. The executor reuses `trace` to build the real model.
"""

from __future__ import annotations

import difflib
import graphlib
import json
import math
import re
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any

from nncards.card import Card, ModelRole, Params, layer_name
from nncards.contract.catalog import ValidationResult
from nncards.contract.graph import Graph
from nncards.contract.limits import DEFAULT_LIMITS, Limits
from nncards.contract.errors import NncardsError, Problem
from nncards.keras_objects import import_tensorflow_quietly
from nncards.registry import registry
from nncards.contract.shorthands import BY_TYPE

NODE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass
class Wire:
    edge: int
    source: str
    source_port: str


@dataclass
class Analysis:
    graph: Graph
    problems: list[Problem] = field(default_factory=list)
    cards: dict[str, type[Card]] = field(default_factory=dict)
    params: dict[str, Params] = field(default_factory=dict)
    wires: dict[str, dict[str, list[Wire]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    order: list[str] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)
        if problem.node is not None:
            self.broken.add(problem.node)

    def nodes_with_role(self, role: ModelRole) -> list[str]:
        return [n for n in self.order if self.cards.get(n) and self.cards[n].model_role == role]


def analyze(graph: Graph, limits: Limits = DEFAULT_LIMITS) -> Analysis:
    analysis = Analysis(graph)
    if len(graph.nodes) > limits.max_nodes:
        analysis.add(Problem(code="too_large", message=f"the graph has {len(graph.nodes)} nodes, more than the limit of {limits.max_nodes}",
                             expected=f"at most {limits.max_nodes} nodes", received=len(graph.nodes)))
    if len(graph.edges) > limits.max_edges:
        analysis.add(Problem(code="too_large", message=f"the graph has {len(graph.edges)} edges, more than the limit of {limits.max_edges}",
                             expected=f"at most {limits.max_edges} edges", received=len(graph.edges)))
    if analysis.problems:
        return analysis
    _check_nodes(analysis, limits)
    _check_edges(analysis)
    _check_order(analysis)
    _check_required(analysis)
    _check_layer_names(analysis)
    return analysis


def _check_nodes(analysis: Analysis, limits: Limits) -> None:
    seen = set()
    for node in analysis.graph.nodes:
        if not NODE_ID.fullmatch(node.id):
            analysis.add(Problem(code="invalid_node_id", node=node.id, received=node.id,
                                 expected="[A-Za-z0-9_.-]{1,64}",
                                 message=f"node id {node.id!r} must be 1 to 64 letters, digits, '_', '.' or '-'"))
        if node.id in seen:
            analysis.add(Problem(code="duplicate_node_id", node=node.id, received=node.id,
                                 message=f"node id {node.id!r} is used by more than one node"))
            continue
        seen.add(node.id)
        card = registry().get(node.card)
        if card is None:
            analysis.add(_unknown_card(node.id, node.card))
            continue
        analysis.cards[node.id] = card
        params, problems = card.validate_params(node.id, node.params)
        for problem in problems:
            analysis.add(problem)
        if params is None:
            continue
        analysis.params[node.id] = params
        if card.model_role is ModelRole.INPUT:
            _check_input_size(analysis, node.id, params, limits)
        _check_shorthand_ranks(analysis, node.id, card, params)


def _unknown_card(node: str, card_id: str) -> Problem:
    """An unknown card id, with the closest ids and titles of the catalogue as suggestions."""
    cards = registry().cards
    by_title = {card.title.casefold(): card.id for card in cards.values()}
    near = difflib.get_close_matches(card_id, list(cards), n=3, cutoff=0.6)
    near += [by_title[t] for t in difflib.get_close_matches(card_id.casefold(), list(by_title), n=3, cutoff=0.6)]
    near = list(dict.fromkeys(near))[:3]
    hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    return Problem(code="unknown_card", node=node, received=card_id, expected=near or None,
                   message=f"there is no card {card_id!r}{hint}")


def _check_input_size(analysis: Analysis, node: str, params: Params, limits: Limits) -> None:
    elements = math.prod(d for d in params.shape if d is not None)
    if elements > limits.max_tensor_elements:
        analysis.add(Problem(code="too_large", node=node, port="shape", received=params.shape,
                             expected=f"at most {limits.max_tensor_elements} elements per sample",
                             message=f"an input of shape {params.shape} has {elements} elements per sample, "
                             f"more than the limit of {limits.max_tensor_elements}"))


def _rank_problem(node: str, port: str, what: str, needs: int, rank: int) -> Problem:
    return Problem(code="param_invalid", node=node, port=port, received=what,
                   expected=f"an initializer that serves {rank}-D weights",
                   message=f"{port}: {what} needs a weight of rank {needs} or more, "
                   f"but this weight has rank {rank}")


def _check_shorthand_ranks(analysis: Analysis, node: str, card: type[Card], params: Params) -> None:
    for port, rank in card.weight_ranks.items():
        value = getattr(params, port)
        if port in params.model_fields_set and isinstance(value, str):
            needs = BY_TYPE["NeuralNetworkInitializer"][value].min_rank
            if needs > rank:
                analysis.add(_rank_problem(node, port, f"initializer {value!r}", needs, rank))


def _check_edges(analysis: Analysis) -> None:
    nodes = {n.id: n for n in analysis.graph.nodes}
    for index, edge in enumerate(analysis.graph.edges):
        missing = [end for end in (edge.source, edge.target) if end not in nodes]
        if missing:
            analysis.add(Problem(code="dangling_edge", edge=index, node=missing[0], received=missing[0],
                                 message=f"edge {index} refers to node {missing[0]!r}, which does not exist"))
            continue
        source, target = analysis.cards.get(edge.source), analysis.cards.get(edge.target)
        if source is None or target is None:
            continue  # the unknown card is already reported
        out_port = source.output_port(edge.source_port)
        if out_port is None:
            analysis.add(Problem(code="unknown_port", edge=index, node=edge.source, port=edge.source_port,
                                 expected=[p.id for p in source.outputs], received=edge.source_port,
                                 message=f"{source.id} has no output port {edge.source_port!r}"))
        in_port = target.input_port(edge.target_port)
        if in_port is None or not in_port.socket:
            sockets = [p.id for p in target.inputs() if p.socket]
            reason = "no input port" if in_port is None else "no socket for the literal input"
            analysis.add(Problem(code="unknown_port", edge=index, node=edge.target, port=edge.target_port,
                                 expected=sockets, received=edge.target_port,
                                 message=f"{target.id} has {reason} {edge.target_port!r}"))
        if out_port is None or in_port is None or not in_port.socket:
            continue
        if out_port.type != in_port.type:
            analysis.add(Problem(code="type_mismatch", edge=index, node=edge.target, port=edge.target_port,
                                 expected=in_port.type, received=out_port.type,
                                 message=f"{edge.target_port} takes {in_port.type}, but "
                                 f"{edge.source}.{edge.source_port} gives {out_port.type}"))
            continue
        wires = analysis.wires[edge.target][edge.target_port]
        if wires and in_port.multiplicity == "1":
            analysis.add(Problem(code="multiple_edges_to_port", edge=index, node=edge.target, port=edge.target_port,
                                 message=f"{edge.target_port} takes one edge, and edge {wires[0].edge} already brings one"))
            continue
        if edge.target_port in nodes[edge.target].params:
            analysis.add(Problem(code="param_and_edge", edge=index, node=edge.target, port=edge.target_port,
                                 message=f"{edge.target_port} is set both in params and by edge {index}; keep one"))
            continue
        wires.append(Wire(index, edge.source, edge.source_port))
        rank = target.weight_ranks.get(edge.target_port)
        if rank is not None and source.min_weight_rank > rank:
            analysis.add(_rank_problem(edge.target, edge.target_port, source.id, source.min_weight_rank, rank))


CYCLE_SHOWN = 12  # nodes of a cycle written out in full in each of its problems


def _check_order(analysis: Analysis) -> None:
    sorter = graphlib.TopologicalSorter({n.id: set() for n in analysis.graph.nodes})
    for target, ports in analysis.wires.items():
        for wires in ports.values():
            sorter.add(target, *(w.source for w in wires))
    try:
        analysis.order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]  # closed: its last node is its first
        ring = cycle[:-1]
        for index, node in enumerate(ring):
            # A long cycle is told around each node only: the whole of it in every problem would
            # make the answer grow with the square of the cycle's length.
            around = cycle if len(ring) <= CYCLE_SHOWN else [ring[index - 1], node, ring[(index + 1) % len(ring)]]
            shown = " -> ".join(around) if len(ring) <= CYCLE_SHOWN else \
                f"... -> {' -> '.join(around)} -> ... ({len(ring)} nodes)"
            analysis.add(Problem(code="cycle", node=node, received=around,
                                 message=f"node {node!r} is on a cycle: {shown}"))
        analysis.order = _acyclic_order(analysis, set(cycle))


def _acyclic_order(analysis: Analysis, cyclic: set[str]) -> list[str]:
    """A topological order of the nodes not on or after a cycle, so they still get shapes.

    Kahn's algorithm, linear in nodes and wires: a node is ready once every node it depends on
    is placed; a node on a cycle is never placed, so neither is anything downstream of one.
    """
    waiting = {n.id: {w.source for ws in analysis.wires[n.id].values() for w in ws} for n in analysis.graph.nodes}
    dependents: dict[str, list[str]] = {node: [] for node in waiting}
    for node, sources in waiting.items():
        for source in sources:
            dependents.setdefault(source, []).append(node)
    missing = {node: len(sources) for node, sources in waiting.items()}
    ready = [node for node, count in missing.items() if not count and node not in cyclic]
    order = []
    while ready:
        node = ready.pop()
        order.append(node)
        for dependent in dependents[node]:
            missing[dependent] -= 1
            if not missing[dependent] and dependent not in cyclic:
                ready.append(dependent)
    return order


def _check_required(analysis: Analysis) -> None:
    # A port an edge reaches is not missing: when that edge was refused (unknown card or port,
    # type mismatch, ...), its own problem says why, and a second one would only repeat it.
    reached = {(edge.target, edge.target_port) for edge in analysis.graph.edges}
    for node, card in analysis.cards.items():
        for port in card.sockets:
            if port.required and not analysis.wires[node].get(port.id) and (node, port.id) not in reached:
                analysis.add(Problem(code="missing_required_input", node=node, port=port.id,
                                     message=f"{port.id} of {card.id} must be connected"))
    if not any(c.model_role is ModelRole.INPUT for c in analysis.cards.values()):
        analysis.add(Problem(code="no_inputs", message="the graph has no Input card"))
    if not any(c.model_role is ModelRole.OUTPUT for c in analysis.cards.values()):
        analysis.add(Problem(code="no_outputs", message="the graph has no Output card"))


def _check_layer_names(analysis: Analysis) -> None:
    owners: dict[str, str] = {}
    for node in analysis.graph.nodes:
        card = analysis.cards.get(node.id)
        if card is None or not (card.makes_layer or card.model_role is ModelRole.INPUT):
            continue
        name = layer_name(card, node.id, analysis.params.get(node.id))
        if name in owners and owners[name] != node.id:
            analysis.add(Problem(code="duplicate_layer_name", node=node.id, port="name", received=name,
                                 message=f"layer name {name!r} is already used by node {owners[name]!r}"))
        owners.setdefault(name, node.id)


# -- shapes ---------------------------------------------------------------------------------


@dataclass
class Trace:
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    sockets: dict[str, dict[str, Any]] = field(default_factory=dict)
    shapes: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def _shape_of(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_shape_of(v) for v in value]
    return [None if d is None else int(d) for d in value.shape]


def _elements(shape: list) -> int:
    if shape and isinstance(shape[0], list):
        return max(_elements(s) for s in shape)
    return math.prod(d for d in shape[1:] if d is not None)


TENSOR = "NeuralNetworkTensor"


@dataclass(frozen=True)
class TensorSpec:
    """All that later nodes can tell of a symbolic tensor."""

    shape: tuple
    dtype: str
    sparse: bool
    ragged: bool

    @classmethod
    def of(cls, value: Any) -> TensorSpec | tuple:
        """The spec of a symbolic tensor, or a tuple of specs for a list of them."""
        import keras

        if isinstance(value, (list, tuple)):
            return tuple(cls.of(v) for v in value)
        if not isinstance(value, keras.KerasTensor):
            raise TypeError(f"not a symbolic tensor: {type(value).__name__}")
        return cls(tuple(value.shape), str(value.dtype), bool(value.sparse), bool(value.ragged))

    @staticmethod
    def fresh(spec: TensorSpec | tuple) -> Any:
        """A new symbolic tensor (or list of them) that fits the spec."""
        import keras

        if isinstance(spec, tuple):
            return [TensorSpec.fresh(s) for s in spec]
        return keras.KerasTensor(spec.shape, dtype=spec.dtype, sparse=spec.sparse, ragged=spec.ragged)


class NodeMemo:
    """What the symbolic build of a node gave, kept for the next graph that holds the same node.

    An editor sends the same graph again and again with one change, and a change alters the
    tensors of the nodes downstream of it only: the others need not be built again. The key is
    everything that decides the build: the card, the node id (problems name it, and it is the
    default layer name), the validated params, the size limit, and the shape and dtype of each
    wired tensor. A node takes part only when tensors are all it takes and all that is taken
    from it: a wired layer or instance is an object whose state a key cannot capture. A hit
    gives the stored problems, or fresh symbolic tensors of the stored specs. Least recently
    used entries go first, as many as it takes to keep within `size` entries and `max_bytes`
    (an estimate of what the keys and problems hold: a node's params may be megabytes);
    `hits` and `misses` count lookups.
    """

    ENTRY_OVERHEAD_BYTES = 1024  # the tuples, specs and dictionary slot of an entry

    def __init__(self, size: int, max_bytes: int | None = None):
        self.size, self.max_bytes = size, max_bytes
        self.hits = self.misses = 0
        self.bytes = 0
        self._entries: OrderedDict[tuple, tuple[tuple[Problem, ...], dict | None, int]] = OrderedDict()

    def key(self, analysis: Analysis, consumed: set[tuple[str, str]], node: str, sockets: dict,
            limits: Limits) -> tuple | None:
        """The node's key, or None when it cannot take part."""
        card = analysis.cards[node]
        if any(card.input_port(p).type != TENSOR for p in analysis.wires[node]):
            return None
        if any((node, p.id) in consumed for p in card.outputs if p.type != TENSOR):
            return None
        try:
            inputs = tuple((port, TensorSpec.of(value)) for port, value in sorted(sockets.items()))
        except TypeError:
            return None
        params = json.dumps(analysis.params[node].model_dump(mode="json"), sort_keys=True, allow_nan=True)
        return card.id, node, params, inputs, limits.max_tensor_elements

    def recall(self, key: tuple) -> tuple[dict | None, list[Problem] | None]:
        """(outputs, problems) as a build would give them; (None, None) for a key never stored."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None, None
        self.hits += 1
        self._entries.move_to_end(key)
        problems, specs, _ = entry
        outputs = None if specs is None else {port: TensorSpec.fresh(spec) for port, spec in specs.items()}
        return outputs, list(problems)

    def store(self, key: tuple, card: type[Card], outputs: dict | None, problems: list[Problem]) -> None:
        try:
            specs = None if outputs is None else {p.id: TensorSpec.of(outputs[p.id]) for p in card.outputs
                                                  if p.type == TENSOR and p.id in outputs}
        except TypeError:
            return
        cost = self.ENTRY_OVERHEAD_BYTES + len(key[2]) + sum(len(p.model_dump_json()) for p in problems)
        if self.max_bytes is not None and cost > self.max_bytes:
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self.bytes -= previous[2]
        self._entries[key] = (tuple(problems), specs, cost)
        self.bytes += cost
        while len(self._entries) > self.size or self.max_bytes is not None and self.bytes > self.max_bytes:
            self.bytes -= self._entries.popitem(last=False)[1][2]

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.misses = self.bytes = 0



def _consumed_outputs(analysis: Analysis) -> set[tuple[str, str]]:
    return {(w.source, w.source_port) for ports in analysis.wires.values() for ws in ports.values() for w in ws}


def trace(analysis: Analysis, limits: Limits = DEFAULT_LIMITS, memo: NodeMemo | None = None) -> Trace:
    """Build the well-formed part of the graph with Keras, node by node in topological order.

    With a `memo`, a node built before with the same card, params and input tensors takes its
    result from there instead of being built again (see `NodeMemo`)."""
    result = Trace()
    skipped = set(analysis.broken)
    consumed = _consumed_outputs(analysis) if memo is not None else set()
    for node in analysis.order:
        card = analysis.cards.get(node)
        if node in skipped or card is None or node not in analysis.params:
            skipped.add(node)
            continue
        upstream = [w.source for ws in analysis.wires[node].values() for w in ws]
        if any(u in skipped or u not in result.values for u in upstream):
            skipped.add(node)
            continue
        absent = [(port_id, w) for port_id, wires in analysis.wires[node].items() for w in wires
                  if w.source_port not in result.values[w.source]]
        if absent:
            result.problems.extend(_absent_output(analysis, node, port_id, wire) for port_id, wire in absent)
            skipped.add(node)
            continue
        sockets = {port_id: [result.values[w.source][w.source_port] for w in wires]
                   for port_id, wires in analysis.wires[node].items()}
        sockets = {port_id: values if card.input_port(port_id).multiplicity == "n" else values[0]
                   for port_id, values in sockets.items()}
        key = memo.key(analysis, consumed, node, sockets, limits) if memo is not None else None
        outputs, problems = memo.recall(key) if key is not None else (None, None)
        if problems is None:
            outputs, problems = _build_node(card, node, analysis.params[node], sockets, limits)
            if key is not None:
                memo.store(key, card, outputs, problems)
        result.problems.extend(problems)
        if outputs is None:
            skipped.add(node)
            continue
        result.values[node] = outputs
        result.sockets[node] = sockets
        shapes = {p.id: _shape_of(outputs[p.id]) for p in card.outputs
                  if p.type == TENSOR and p.id in outputs}
        if shapes:
            result.shapes[node] = shapes
        oversized = [Problem(code="too_large", node=node, port=port, received=shape,
                             expected=f"at most {limits.max_tensor_elements} elements per sample",
                             message=f"{port} has shape {shape}, more than {limits.max_tensor_elements} "
                             "elements per sample")
                     for port, shape in shapes.items() if _elements(shape) > limits.max_tensor_elements]
        if oversized:
            result.problems.extend(oversized)
            skipped.add(node)
            del result.values[node], result.sockets[node]
    return result


def _absent_output(analysis: Analysis, node: str, port: str, wire: Wire) -> Problem:
    """A wire from an output its node did not produce: a layer card makes its `output` only
    when its tensor input is wired (without it, the card makes the layer alone)."""
    source = analysis.cards[wire.source]
    unwired = [p.id for p in source.sockets if p.type == TENSOR and not analysis.wires[wire.source].get(p.id)]
    because = f"; connect its {unwired[0]!r} input" if unwired else ""
    return Problem(code="missing_required_input", node=wire.source, port=unwired[0] if unwired else None,
                   edge=wire.edge, message=f"{wire.source} gives no {wire.source_port!r} for {node}.{port}{because}")


def _build_node(card: type[Card], node: str, params: Params, sockets: dict,
                limits: Limits) -> tuple[dict | None, list[Problem]]:
    """The node's output values and its problems; no outputs when it cannot be built. A built
    node may still have problems: weights over the size limit."""
    input_shapes = {p: _shape_of(v) for p, v in sockets.items() if card.input_port(p).type == TENSOR}
    problems = card.check(node, params, input_shapes)
    if problems:
        return None, problems
    try:
        outputs = card.build(node, params, sockets)
    except NncardsError as exc:  # the card found the problems itself
        return None, exc.problems
    except MemoryError:  # the process's want, not the node's fault: its caller answers it (too_large)
        raise
    except Exception as exc:  # Keras refusing the node is a problem of that node
        return None, [_build_problem(node, card, input_shapes, exc)]
    return outputs, [Problem(code="too_large", node=node, received=list(weight.shape),
                             expected=f"at most {limits.max_tensor_elements} elements per weight",
                             message=f"weight {weight.name} would have shape {list(weight.shape)}, more than "
                             f"{limits.max_tensor_elements} elements")
                     for weight in getattr(outputs.get("layer"), "weights", [])
                     if math.prod(weight.shape) > limits.max_tensor_elements]


def _build_problem(node: str, card: type[Card], input_shapes: dict, exc: Exception) -> Problem:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if input_shapes:
        shapes = ", ".join(f"{p} {s}" for p, s in input_shapes.items())
        return Problem(code="shape_mismatch", node=node, port=next(iter(input_shapes)), received=input_shapes,
                       message=f"{card.id} cannot be applied to {shapes}: {text}")
    return Problem(code="param_invalid", node=node, message=f"{card.id} could not be built: {text}")


def trace_without_weights(analysis: Analysis, limits: Limits = DEFAULT_LIMITS, memo: NodeMemo | None = None) -> Trace:
    """`trace` inside a Keras stateless scope: layers are built but their variables are never
    allocated, so a graph is checked fast and a huge weight is refused before it exists. Nodes
    met before come from the `memo`, when given."""
    import_tensorflow_quietly()
    import keras
    from keras.src.backend.common import global_state

    with keras.StatelessScope(initialize_variables=False):
        try:
            return trace(analysis, limits, memo)
        finally:
            # Keras queues deferred variables for a later initialization that must never come.
            global_state.set_global_attribute("uninitialized_variables", [])


def check(graph: Graph, limits: Limits = DEFAULT_LIMITS,
          memo: NodeMemo | None = None) -> tuple[Analysis, list[Problem], dict]:
    """The structural analysis of a graph, every problem of it, and the shapes of the tensor
    ports that could be inferred."""
    analysis = analyze(graph, limits)
    if not analysis.order or any(p.code == "too_large" and p.node is None for p in analysis.problems):
        return analysis, analysis.problems, {}
    traced = trace_without_weights(analysis, limits, memo)
    return analysis, analysis.problems + traced.problems, traced.shapes


class Validator:
    """Validates graphs one after another, remembering node builds in a memo of its own: an
    editor re-validating after one change has only the nodes downstream of it built again."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, memo_entries: int = 4096, memo_bytes: int | None = None):
        self.limits = limits
        self.memo = NodeMemo(memo_entries, memo_bytes)

    def validate(self, graph: dict | Graph) -> dict:
        """The result of `POST /api/v1/graphs/validate` for a graph."""
        graph = graph if isinstance(graph, Graph) else Graph.model_validate(graph)
        _, problems, shapes = check(graph, self.limits, self.memo)
        return ValidationResult(valid=not problems, errors=problems, shapes=shapes).as_json()


def validate(graph: dict | Graph, limits: Limits = DEFAULT_LIMITS) -> dict:
    """The validation of one graph, with a memo of its own."""
    return Validator(limits).validate(graph)
