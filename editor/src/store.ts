// The one store of the editor (zustand): the graph being edited as React Flow nodes and edges,
// its undo/redo history, the texts typed in the form that are not committed yet (drafts), the
// live validation result, notices, and the run slice (run.ts).
//
// Every edit of the graph goes through `edit`, which records the state before it for undo.

import { applyEdgeChanges, applyNodeChanges, type Edge, type EdgeChange, type Node, type NodeChange } from "@xyflow/react";
import { create } from "zustand";
import type { Catalog, Graph, GraphEdge, Params, Validation } from "./types";
import { createRunSlice, type RunSlice } from "./run";

export interface CardData extends Record<string, unknown> {
  card: string;
  params: Params;
  expanded?: boolean;
}
export type CardNode = Node<CardData, "card">;
export type Wire = Edge<Record<string, unknown>, "wire">;

/** A text typed in the form and not committed: `error` says why it cannot be (null: not yet). */
export interface Draft {
  text: string;
  error: string | null;
  /** How the card names the pending text when the text itself is not for reading. */
  shown?: string;
}

export interface Notice {
  text: string;
  level: "info" | "error" | "warning";
  seq: number;
}

interface Snapshot {
  nodes: CardNode[];
  edges: Wire[];
}

export interface ValidationState extends Validation {
  pending: boolean;
  failure: string | null;
}

const NODE_ID = /^[A-Za-z0-9_.-]{1,64}$/;
export const STORAGE_KEY = "nncards.editor.graph";
const RECENT_KEY = "nncards.editor.recent";
const HISTORY_LIMIT = 200;

export const wireId = (e: GraphEdge) => `${e.source}.${e.source_port}->${e.target}.${e.target_port}`;
export const wireName = (e: GraphEdge) => `${e.source}.${e.source_port} → ${e.target}.${e.target_port}`;

export function toWire(e: GraphEdge): Wire {
  return { id: wireId(e), type: "wire", source: e.source, sourceHandle: e.source_port, target: e.target, targetHandle: e.target_port };
}

export function fromWire(w: Wire | Edge): GraphEdge {
  return { source: w.source, source_port: w.sourceHandle || "", target: w.target, target_port: w.targetHandle || "" };
}

/** Keras' own naming of layers: "BatchNormalization" → "batch_normalization", "Conv2D" → "conv2d". */
function snakeCase(name: string): string {
  return name
    .replace(/[^A-Za-z0-9_]+/g, "")
    .replace(/(.)([A-Z][a-z]+)/g, "$1_$2")
    .replace(/([a-z])([A-Z])/g, "$1_$2")
    .toLowerCase();
}

/** The stem of node ids made from a card: the part after the family prefix, in snake case. */
export function idStem(cardId: string): string {
  const cut = cardId.indexOf("_");
  return snakeCase(cut >= 0 ? cardId.slice(cut + 1) : cardId).slice(0, 56) || "node";
}

function freshId(cardId: string, taken: Set<string>): string {
  const stem = idStem(cardId);
  for (let n = 1; ; n += 1) {
    const id = `${stem}_${n}`;
    if (!taken.has(id)) return id;
  }
}

/** A node without React Flow's view state: what the history keeps. */
function bare(node: CardNode): CardNode {
  return { id: node.id, type: "card", position: { ...node.position }, data: node.data };
}

function snapshot(nodes: CardNode[], edges: Wire[]): Snapshot {
  return { nodes: nodes.map(bare), edges: edges.map((e) => toWire(fromWire(e))) };
}

/** Restores a snapshot, keeping the measured size of nodes that are still on the canvas. */
function restore(snap: Snapshot, current: CardNode[]): Pick<EditorState, "nodes" | "edges"> {
  const measured = new Map(current.map((n) => [n.id, n.measured]));
  return {
      nodes: snap.nodes.map((n) => (measured.get(n.id) ? { ...n, measured: measured.get(n.id) } : n)),
      edges: snap.edges,
    };
  }

  export function loadRecent(): string[] {
    try {
      const list = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
      return Array.isArray(list) ? list.filter((x) => typeof x === "string") : [];
    } catch {
      return [];
    }
  }

  export interface EditorState extends RunSlice {
    catalog: Catalog;
    nodes: CardNode[];
    edges: Wire[];
    past: Snapshot[];
    future: Snapshot[];
    /** The graph changed since it was last saved, loaded or started anew. */
    dirty: boolean;
    drafts: Record<string, Record<string, Draft>>;
    validation: ValidationState;
    notice: Notice;
    /** An output port chosen with the keyboard, waiting for the input it should feed. */
    picked: { node: string; port: string } | null;
    clipboard: Graph | null;
    recent: string[];
    /** A request to centre the view on a node (the canvas watches it). */
    focus: { node: string; seq: number } | null;

    notify(text: string, level?: Notice["level"]): void;
    edit(change: (state: EditorState) => Partial<EditorState> | null): void;
    graph(): Graph;
    card(nodeId: string): ReturnType<Catalog["cards"]["get"]>;
    addNode(cardId: string, position: { x: number; y: number }): string;
    onNodesChange(changes: NodeChange<CardNode>[]): void;
    onEdgesChange(changes: EdgeChange<Wire>[]): void;
    beginMove(): void;
    connect(source: string, sourcePort: string, target: string, targetPort: string): boolean;
    remove(nodeIds: string[], edgeIds: string[]): void;
    setParam(nodeId: string, port: string, value: unknown): void;
    setDraft(nodeId: string, port: string, draft: Draft | null): void;
    rename(from: string, to: string): string | null;
    toggleExpanded(nodeId: string): void;
    select(nodeIds: string[]): void;
    focusNode(nodeId: string): void;
    undo(): void;
    redo(): void;
    load(graph: unknown): void;
    clear(): void;
    markSaved(): void;
    setPositions(positions: Record<string, { x: number; y: number }>): void;
    copy(): number;
    paste(): number;
    pick(node: string, port: string | null): void;
  }

  /** Checks a GRAPH document's outline; throws an Error with a readable message. */
  function readGraph(graph: any): Graph {
    if (!graph || typeof graph !== "object" || !Array.isArray(graph.nodes) || !Array.isArray(graph.edges)) {
      throw new Error('A graph file is a JSON object with a "nodes" list and an "edges" list.');
    }
    graph.nodes.forEach((n: any, index: number) => {
      if (!n || typeof n.id !== "string" || typeof n.card !== "string") throw new Error(`Node ${index + 1} needs a string "id" and "card".`);
    });
    return graph as Graph;
  }

  function nodesFrom(graph: Graph): CardNode[] {
    return graph.nodes.map((n, index) => {
      const p = n.position && Number.isFinite(n.position.x) && Number.isFinite(n.position.y) ? n.position : { x: 40 + 280 * index, y: 40 };
      return { id: n.id, type: "card", position: { x: p.x, y: p.y }, data: { card: n.card, params: { ...(n.params || {}) } } };
    });
  }

export const useEditor = create<EditorState>()((set, get, api) => {
  /** Undo (from the past to the future) or redo (the other way): one snapshot moves across. */
  function travel(from: "past" | "future", to: "past" | "future", verb: string) {
    const state = get();
    const target = state[from][state[from].length - 1];
    if (!target) {
      state.notify(`Nothing to ${verb}.`);
      return;
    }
    set({
      ...restore(target, state.nodes),
      [from]: state[from].slice(0, -1),
      [to]: [...state[to], snapshot(state.nodes, state.edges)],
      dirty: true,
    });
    state.notify(verb === "undo" ? "Undone." : "Redone.");
  }

  return {
    ...createRunSlice(set, get, api),
    catalog: { cards: new Map(), types: new Map() },
    nodes: [],
    edges: [],
    past: [],
    future: [],
    dirty: false,
    drafts: {},
    validation: { valid: true, errors: [], shapes: {}, pending: false, failure: null },
    notice: { text: "Loading the card catalogue…", level: "info", seq: 0 },
    picked: null,
    clipboard: null,
    recent: loadRecent(),
    focus: null,

    notify(text, level = "info") {
      set({ notice: { text, level, seq: get().notice.seq + 1 } });
    },

    edit(change) {
      const state = get();
      const before = snapshot(state.nodes, state.edges);
      const update = change(state);
      if (!update) return;
      set({ ...update, past: [...state.past, before].slice(-HISTORY_LIMIT), future: [], dirty: true });
    },

    graph() {
      const { nodes, edges } = get();
      return {
        schema_version: 1,
        nodes: nodes.map((n) => ({
          id: n.id, card: n.data.card, params: structuredClone(n.data.params),
          position: { x: Math.round(n.position.x), y: Math.round(n.position.y) },
        })),
        edges: edges.map(fromWire),
      };
    },

    card(nodeId) {
      const node = get().nodes.find((n) => n.id === nodeId);
      return node ? get().catalog.cards.get(node.data.card) : undefined;
    },

    addNode(cardId, position) {
      const id = freshId(cardId, new Set(get().nodes.map((n) => n.id)));
      get().edit((s) => ({
        nodes: [
          ...s.nodes.map((n) => (n.selected ? { ...n, selected: false } : n)),
          { id, type: "card", position: { x: Math.round(position.x), y: Math.round(position.y) }, data: { card: cardId, params: {} }, selected: true },
        ],
      }));
      const recent = [cardId, ...get().recent.filter((c) => c !== cardId)].slice(0, 6);
      set({ recent });
      try {
        localStorage.setItem(RECENT_KEY, JSON.stringify(recent));
      } catch {
        // not kept
      }
      return id;
    },

    onNodesChange(changes) {
      // Removals go through `remove` (one undo step for the nodes and their wires).
      const kept = changes.filter((c) => c.type !== "remove");
      if (!kept.length) return;
      // A pointer drag was recorded when it began (`beginMove`); a move by the arrow keys is one step.
      const dragEnds = get().nodes.some((n) => n.dragging);
      const keyMove = kept.some((c) => c.type === "position" && !c.dragging && c.position) && !dragEnds;
      if (keyMove) get().edit((s) => ({ nodes: applyNodeChanges(kept, s.nodes) }));
      else set({ nodes: applyNodeChanges(kept, get().nodes) });
    },

    onEdgesChange(changes) {
      const kept = changes.filter((c) => c.type !== "remove");
      if (kept.length) set({ edges: applyEdgeChanges(kept, get().edges) });
    },

    beginMove() {
      const state = get();
      set({ past: [...state.past, snapshot(state.nodes, state.edges)].slice(-HISTORY_LIMIT), future: [], dirty: true });
    },

    connect(source, sourcePort, target, targetPort) {
      const state = get();
      const from = state.card(source)?.outputs.find((p) => p.id === sourcePort);
      const to = state.card(target)?.inputs.find((p) => p.id === targetPort);
      if (!from || !to) {
        state.notify("A wire goes from an output socket (right side) to an input socket (left side).", "error");
        return false;
      }
      const label = `${source}.${sourcePort} (${from.type}) → ${target}.${targetPort} (${to.type})`;
      let reason: string | null = null;
      if (!to.socket) reason = `${to.text} is typed on the card, it takes no wire.`;
      else if (from.type !== to.type) reason = "the types differ; a wire needs an output and an input of the same type.";
      else if (source === target) reason = "a node cannot feed itself.";
      if (reason) {
        state.notify(`Refused ${label}: ${reason}`, "error");
        return false;
      }
      const wire: GraphEdge = { source, source_port: sourcePort, target, target_port: targetPort };
      if (state.edges.some((e) => e.id === wireId(wire))) return true;
      const replaced = to.multiplicity === "n" ? [] : state.edges.filter((e) => e.target === target && e.targetHandle === targetPort);
      state.edit((s) => {
        const node = s.nodes.find((n) => n.id === target)!;
        // A socket that also takes a literal: the wire wins, so a literal would be `param_and_edge`.
        const params = { ...node.data.params };
        delete params[targetPort];
        const drafts = { ...s.drafts, [target]: { ...(s.drafts[target] || {}) } };
        delete drafts[target][targetPort];
        return {
          nodes: s.nodes.map((n) => (n === node ? { ...n, data: { ...n.data, params } } : n)),
          edges: [...s.edges.filter((e) => !replaced.includes(e)), toWire(wire)],
          drafts,
        };
      });
      if (replaced.length) {
        get().notify(`Replaced the wire ${replaced.map((e) => wireName(fromWire(e))).join(", ")} with ${wireName(wire)} (an input takes one wire; Undo brings the old one back).`, "warning");
      } else {
        get().notify(`Wired ${wireName(wire)}.`);
      }
      return true;
    },

    remove(nodeIds, edgeIds) {
      if (!nodeIds.length && !edgeIds.length) return;
      const gone = new Set(nodeIds);
      const wires = new Set(edgeIds);
      const state = get();
      const lost = state.edges.filter((e) => wires.has(e.id) || gone.has(e.source) || gone.has(e.target));
      state.edit((s) => {
        const drafts = { ...s.drafts };
        for (const id of gone) delete drafts[id];
        return {
          nodes: s.nodes.filter((n) => !gone.has(n.id)),
          edges: s.edges.filter((e) => !lost.includes(e)),
          drafts,
        };
      });
      const parts = [nodeIds.length && `${nodeIds.length} card${nodeIds.length > 1 ? "s" : ""} (${nodeIds.join(", ")})`,
        lost.length && `${lost.length} wire${lost.length > 1 ? "s" : ""}`].filter(Boolean);
      get().notify(`Deleted ${parts.join(" and ")}. Ctrl+Z undoes it.`);
    },

    setParam(nodeId, port, value) {
      get().edit((s) => {
        const node = s.nodes.find((n) => n.id === nodeId);
        if (!node) return null;
        const params = { ...node.data.params };
        if (value === undefined) delete params[port];
        else params[port] = value;
        const drafts = { ...s.drafts, [nodeId]: { ...(s.drafts[nodeId] || {}) } };
        delete drafts[nodeId][port];
        return { nodes: s.nodes.map((n) => (n === node ? { ...n, data: { ...n.data, params } } : n)), drafts };
      });
    },

    setDraft(nodeId, port, draft) {
      const drafts = { ...get().drafts, [nodeId]: { ...(get().drafts[nodeId] || {}) } };
      if (draft) drafts[nodeId][port] = draft;
      else delete drafts[nodeId][port];
      set({ drafts });
    },

    rename(from, to) {
      if (from === to) return null;
      if (!NODE_ID.test(to)) return `A node id uses 1 to 64 letters, digits, "_", "." or "-", got "${to}"`;
      if (get().nodes.some((n) => n.id === to)) return `The id "${to}" is already taken`;
      get().edit((s) => {
        const drafts = { ...s.drafts };
        if (drafts[from]) {
          drafts[to] = drafts[from];
          delete drafts[from];
        }
        const swap = (id: string) => (id === from ? to : id);
        return {
          nodes: s.nodes.map((n) => (n.id === from ? { ...n, id: to } : n)),
          edges: s.edges.map((e) => toWire({ ...fromWire(e), source: swap(e.source), target: swap(e.target) })),
          drafts,
        };
      });
      return null;
    },

    toggleExpanded(nodeId) {
      set({ nodes: get().nodes.map((n) => (n.id === nodeId ? { ...n, data: { ...n.data, expanded: !n.data.expanded } } : n)) });
    },

    select(nodeIds) {
      const chosen = new Set(nodeIds);
      set({
        nodes: get().nodes.map((n) => (Boolean(n.selected) === chosen.has(n.id) ? n : { ...n, selected: chosen.has(n.id) })),
        edges: get().edges.map((e) => (e.selected ? { ...e, selected: false } : e)),
      });
    },

    focusNode(nodeId) {
      get().select([nodeId]);
      set({ focus: { node: nodeId, seq: (get().focus?.seq || 0) + 1 } });
    },

    undo() {
      travel("past", "future", "undo");
    },

    redo() {
      travel("future", "past", "redo");
    },

    load(document) {
      const graph = readGraph(document);
      get().edit(() => ({ nodes: nodesFrom(graph), edges: graph.edges.map(toWire), drafts: {} }));
      set({ dirty: false });
    },

    clear() {
      get().edit(() => ({ nodes: [], edges: [], drafts: {} }));
      set({ dirty: false });
    },

    markSaved() {
      set({ dirty: false });
    },

    setPositions(positions) {
      get().edit((s) => ({ nodes: s.nodes.map((n) => (positions[n.id] ? { ...n, position: positions[n.id] } : n)) }));
    },

    copy() {
      const graph = get().graph();
      const chosen = new Set(get().nodes.filter((n) => n.selected).map((n) => n.id));
      if (!chosen.size) return 0;
      set({
        clipboard: {
          schema_version: 1,
          nodes: graph.nodes.filter((n) => chosen.has(n.id)),
          edges: graph.edges.filter((e) => chosen.has(e.source) && chosen.has(e.target)),
        },
      });
      return chosen.size;
    },

    paste() {
      const clip = get().clipboard;
      if (!clip || !clip.nodes.length) return 0;
      const taken = new Set(get().nodes.map((n) => n.id));
      const names = new Map<string, string>();
      for (const n of clip.nodes) {
        const id = freshId(n.card, taken);
        taken.add(id);
        names.set(n.id, id);
      }
      const added: CardNode[] = clip.nodes.map((n) => ({
        id: names.get(n.id)!, type: "card", selected: true,
        position: { x: n.position.x + 40, y: n.position.y + 40 },
        data: { card: n.card, params: structuredClone(n.params) },
      }));
      const wires = clip.edges.map((e) => toWire({ ...e, source: names.get(e.source)!, target: names.get(e.target)! }));
      get().edit((s) => ({ nodes: [...s.nodes.map((n) => (n.selected ? { ...n, selected: false } : n)), ...added], edges: [...s.edges, ...wires] }));
      // The next paste lands further along.
      set({ clipboard: { ...clip, nodes: clip.nodes.map((n) => ({ ...n, position: { x: n.position.x + 40, y: n.position.y + 40 } })) } });
      return added.length;
    },

    pick(node, port) {
      set({ picked: port === null ? null : { node, port } });
    },
  };
});

/** The graph's content without positions: what validation and runs depend on. */
export function structureKey(state: Pick<EditorState, "nodes" | "edges">): string {
  return JSON.stringify([state.nodes.map((n) => [n.id, n.data.card, n.data.params]), state.edges.map((e) => e.id)]);
}

/** Every form text that cannot be committed, as "node · port: sentence". */
export function draftProblems(drafts: EditorState["drafts"]): { node: string; port: string; message: string }[] {
  const list: { node: string; port: string; message: string }[] = [];
  for (const [node, ports] of Object.entries(drafts)) {
    for (const [port, draft] of Object.entries(ports)) if (draft.error) list.push({ node, port, message: draft.error });
  }
  return list;
}

export function readStoredGraph(): Graph | null {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    return saved ? readGraph(JSON.parse(saved)) : null;
  } catch {
    return null;
  }
}
