// The graph being edited (CONTRACT §4), its edit operations and its autosave.
//
// Every change dispatches a "change" event whose `detail.kind` says what changed: "structure"
// (nodes, edges, params: the graph must be validated again; `renamed` {from, to} after a
// rename), "layout" (positions only) or "field-error" (a value flagged in the form).

const NODE_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const STORAGE_KEY = "nncards.editor.graph";

/** Keras' own naming of layers: "BatchNormalization" → "batch_normalization". */
function snakeCase(name) {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
    .replace(/[^A-Za-z0-9_.-]/g, "_")
    .toLowerCase();
}

/** The stem of node ids made from a card: the part after the family prefix, in snake case. */
export function idStem(cardId) {
  const cut = cardId.indexOf("_");
  return snakeCase(cut >= 0 ? cardId.slice(cut + 1) : cardId).slice(0, 56) || "node";
}

export class GraphStore extends EventTarget {
  constructor(catalog) {
    super();
    this.catalog = catalog;
    this.nodes = new Map(); // id → {id, card, params, position}
    this.edges = []; // {source, source_port, target, target_port}
    this.fieldErrors = new Map(); // node id → Map(param → message): values flagged in the form, not sent
  }

  changed(kind, extra = {}) {
    this.dispatchEvent(new CustomEvent("change", { detail: { kind, ...extra } }));
  }

  freshId(cardId) {
    const stem = idStem(cardId);
    for (let n = 1; ; n += 1) {
      const id = `${stem}_${n}`;
      if (!this.nodes.has(id)) return id;
    }
  }

  addNode(cardId, position) {
    const id = this.freshId(cardId);
    this.nodes.set(id, { id, card: cardId, params: {}, position: { x: Math.round(position.x), y: Math.round(position.y) } });
    this.changed("structure");
    return id;
  }

  removeNode(id) {
    this.nodes.delete(id);
    this.fieldErrors.delete(id);
    this.edges = this.edges.filter((e) => e.source !== id && e.target !== id);
    this.changed("structure");
  }

  moveNode(id, position) {
    this.nodes.get(id).position = { x: Math.round(position.x), y: Math.round(position.y) };
    this.changed("layout");
  }

  /** Renames a node; returns an error sentence, or null when renamed. */
  renameNode(oldId, newId) {
    if (newId === oldId) return null;
    if (!NODE_ID.test(newId)) return `A node id uses 1 to 64 letters, digits, "_", "." or "-", got "${newId}"`;
    if (this.nodes.has(newId)) return `The id "${newId}" is already taken`;
    const node = this.nodes.get(oldId);
    this.nodes = new Map([...this.nodes].map(([id, n]) => (id === oldId ? [newId, { ...node, id: newId }] : [id, n])));
    for (const edge of this.edges) {
      if (edge.source === oldId) edge.source = newId;
      if (edge.target === oldId) edge.target = newId;
    }
    if (this.fieldErrors.has(oldId)) {
      this.fieldErrors.set(newId, this.fieldErrors.get(oldId));
      this.fieldErrors.delete(oldId);
    }
    this.changed("structure", { renamed: { from: oldId, to: newId } });
    return null;
  }

  /** Sets a literal input, or removes it (`undefined`) so that the card's default applies. */
  setParam(id, key, value) {
    const params = this.nodes.get(id).params;
    if (value === undefined) delete params[key];
    else params[key] = value;
    this.setFieldError(id, key, null);
    this.changed("structure");
  }

  setFieldError(id, key, message) {
    const errors = this.fieldErrors.get(id) || new Map();
    if (message) errors.set(key, message);
    else errors.delete(key);
    this.fieldErrors.set(id, errors);
    if (message) this.changed("field-error");
  }

  card(nodeId) {
    const node = this.nodes.get(nodeId);
    return node ? this.catalog.cards.get(node.card) : undefined;
  }

  port(nodeId, direction, portId) {
    const card = this.card(nodeId);
    return card && card[direction === "out" ? "outputs" : "inputs"].find((p) => p.id === portId);
  }

  edgeInto(nodeId, portId) {
    return this.edges.find((e) => e.target === nodeId && e.target_port === portId);
  }

  /**
   * Wires an output to an input. Returns `{ok: true}` or `{ok: false, reason}` with a sentence
   * saying why the wire is refused (types differ, a node wired to itself, not a socket).
   */
  connect(source, sourcePort, target, targetPort) {
    const from = this.port(source, "out", sourcePort);
    const to = this.port(target, "in", targetPort);
    if (!from || !to) return { ok: false, reason: "A wire goes from an output socket (right side) to an input socket (left side)." };
    const label = `${source}.${sourcePort} (${from.type}) → ${target}.${targetPort} (${to.type})`;
    if (!to.socket) return { ok: false, reason: `Refused ${label}: ${to.text} is typed on the card, it takes no wire.` };
    if (from.type !== to.type) {
      return { ok: false, reason: `Refused ${label}: the types differ; a wire needs an output and an input of the same type.` };
    }
    if (source === target) return { ok: false, reason: `Refused ${label}: a node cannot feed itself.` };
    const duplicate = this.edges.some((e) => e.source === source && e.source_port === sourcePort && e.target === target && e.target_port === targetPort);
    if (duplicate) return { ok: true };
    if (to.multiplicity !== "n") {
      this.edges = this.edges.filter((e) => !(e.target === target && e.target_port === targetPort));
    }
    // A socket that also takes a literal: the wire wins, so the literal would be `param_and_edge`.
    delete this.nodes.get(target).params[targetPort];
    this.setFieldError(target, targetPort, null);
    this.edges.push({ source, source_port: sourcePort, target, target_port: targetPort });
    this.changed("structure");
    return { ok: true };
  }

  disconnect(edge) {
    this.edges = this.edges.filter((e) => e !== edge);
    this.changed("structure");
  }

  clear() {
    this.nodes = new Map();
    this.edges = [];
    this.fieldErrors = new Map();
    this.changed("structure");
  }

  toJSON() {
    return {
      schema_version: 1,
      nodes: [...this.nodes.values()].map((n) => ({ id: n.id, card: n.card, params: structuredClone(n.params), position: { ...n.position } })),
      edges: this.edges.map((e) => ({ ...e })),
    };
  }

  /** Replaces the graph with a GRAPH document; throws an Error with a readable message. */
  load(graph) {
    if (!graph || typeof graph !== "object" || !Array.isArray(graph.nodes) || !Array.isArray(graph.edges)) {
      throw new Error("A graph file is a JSON object with a \"nodes\" list and an \"edges\" list.");
    }
    const nodes = new Map();
    graph.nodes.forEach((n, index) => {
      if (!n || typeof n.id !== "string" || typeof n.card !== "string") throw new Error(`Node ${index + 1} needs a string "id" and "card".`);
      const position = n.position && Number.isFinite(n.position.x) && Number.isFinite(n.position.y) ? n.position : { x: 40 + 300 * index, y: 40 };
      nodes.set(n.id, { id: n.id, card: n.card, params: { ...(n.params || {}) }, position: { x: position.x, y: position.y } });
    });
    this.nodes = nodes;
    this.edges = graph.edges.map((e) => ({ source: e.source, source_port: e.source_port, target: e.target, target_port: e.target_port }));
    this.fieldErrors = new Map();
    this.changed("structure");
  }

  autosave() {
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(this.toJSON()));
    } catch {
      // Storage full or disabled (private windows): the graph simply is not kept.
    }
  }

  /** Loads the autosaved graph; returns whether there was one. */
  restore() {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (!saved) return false;
    try {
      this.load(JSON.parse(saved));
      return true;
    } catch {
      localStorage.removeItem(STORAGE_KEY);
      return false;
    }
  }
}
