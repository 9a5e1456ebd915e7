// The canvas: cards drawn like the generated card images (plugin/card_image.py), wires between
// sockets, node moves, and wiring by pointer drag or by picking an output then an input.

import { el, svgEl as svg } from "./dom.js";

const DRAG_THRESHOLD = 4;
const MAX_VALUE_CHARS = 16;

/** A literal value as the card shows it: compact JSON, objects as {…}, cut at 16 characters. */
export function valueLabel(value) {
  if (value === undefined || value === null) return "";
  let text;
  if (typeof value === "string") text = value;
  else if (typeof value === "object" && !Array.isArray(value)) text = "{…}";
  else text = JSON.stringify(value);
  return text.length <= MAX_VALUE_CHARS ? text : `${text.slice(0, MAX_VALUE_CHARS - 1)}…`;
}

/** A shape from validation as Keras prints it: [null, 2] → "(None, 2)". */
export function shapeLabel(shape) {
  if (!Array.isArray(shape)) return "";
  if (shape.length && Array.isArray(shape[0])) return shape.map(shapeLabel).join(" ");
  const dims = shape.map((d) => (d === null ? "None" : String(d)));
  return `(${dims.join(", ")}${dims.length === 1 ? "," : ""})`;
}

const portTestId = (node, direction, port) => `port-${node}-${direction}-${port}`;
const edgeTestId = (e) => `edge-${e.source}-${e.source_port}-${e.target}-${e.target_port}`;

export class Canvas extends EventTarget {
  constructor(element, store, catalog, notify) {
    super();
    this.element = element;
    this.store = store;
    this.catalog = catalog;
    this.notify = notify;
    this.world = el("div", { class: "world" });
    this.wires = svg("svg", { class: "wires" });
    // Shapes are written above the cards, so that a card never hides the label of its wire.
    this.wireLabels = svg("svg", { class: "wire-labels", "aria-hidden": "true" });
    this.world.append(this.wires, this.wireLabels);
    element.append(this.world);
    this.views = new Map(); // node id → {element, sockets: Map(key → button), values: Map(port → span), rows: Map(port → row)}
    this.selected = null;
    this.armed = null; // {node, port, direction} picked first when wiring by clicks or keys
    this.validation = { errors: [], shapes: {} };
    this.justDragged = false;
    this.world.addEventListener("pointerdown", (event) => this.onPointerDown(event));
    this.world.addEventListener("click", (event) => this.onClick(event));
    this.world.addEventListener("keydown", (event) => this.onKeyDown(event));
    this.world.addEventListener("dblclick", (event) => {
      const edgeGroup = event.target.closest(".edge");
      if (edgeGroup) this.store.disconnect(edgeGroup.edge);
    });
    new ResizeObserver(() => this.drawEdges()).observe(this.world);
  }

  // -- rendering ------------------------------------------------------------------------------

  render() {
    for (const [id, view] of this.views) {
      if (!this.store.nodes.has(id) || view.card !== this.store.nodes.get(id).card) {
        view.element.remove();
        this.views.delete(id);
      }
    }
    for (const node of this.store.nodes.values()) {
      if (!this.views.has(node.id)) this.views.set(node.id, this.createNode(node));
      this.updateNode(node);
    }
    if (this.selected && !this.store.nodes.has(this.selected)) this.select(null);
    if (this.armed && !this.store.nodes.has(this.armed.node)) this.armed = null;
    this.drawEdges();
  }

  createNode(node) {
    const card = this.catalog.cards.get(node.card);
    const element = el("div", { class: "node", "data-testid": `node-${node.id}`, "data-node": node.id });
    const header = el("div", { class: "node-header", tabindex: "0", role: "button" },
      el("span", { class: "node-title", text: card ? card.title : `Unknown card ${node.card}` }),
      el("span", { class: "node-id", text: node.id }));
    header.setAttribute("aria-label", `${card ? card.title : node.card} card, node ${node.id}. Enter selects, arrows move, Delete removes.`);
    const rows = el("div", { class: "node-rows" });
    const view = { element, card: node.card, sockets: new Map(), values: new Map(), rows: new Map(), problems: null };
    const color = (type) => (this.catalog.types.get(type) || {}).color || "#999";
    for (const port of card ? card.outputs : []) {
      const socket = this.createSocket(node.id, "out", port, color(port.type));
      const row = el("div", { class: "row out", "data-port": port.id }, el("span", { class: "label", text: port.text }), socket);
      view.sockets.set(`out:${port.id}`, socket);
      rows.append(row);
    }
    for (const port of card ? card.inputs : []) {
      const marker = port.socket
        ? this.createSocket(node.id, "in", port, color(port.type))
        : el("span", { class: "type-bar", style: `background:${color(port.type)}`, title: port.type });
      const label = el("span", { class: `label${port.required ? " required" : ""}`, text: port.text });
      const value = el("span", { class: "value" });
      const row = el("div", { class: "row in", "data-port": port.id }, marker, label, value);
      if (port.socket) view.sockets.set(`in:${port.id}`, marker);
      view.values.set(port.id, value);
      view.rows.set(port.id, row);
      rows.append(row);
    }
    view.problems = el("ul", { class: "node-problems", "aria-live": "polite" });
    element.append(header, rows, view.problems);
    this.world.append(element);
    return view;
  }

  createSocket(nodeId, direction, port, color) {
    const socket = el("button", {
      class: `socket${port.multiplicity === "n" ? " variadic" : ""}`,
      type: "button",
      "data-testid": portTestId(nodeId, direction, port.id),
      "data-node": nodeId,
      "data-port": port.id,
      "data-direction": direction,
      "data-type": port.type,
      style: `--type-color:${color}`,
      title: `${port.text} (${port.type})`,
    });
    socket.setAttribute("aria-label", `${direction === "out" ? "Output" : "Input"} ${port.text} (${port.type}) of ${nodeId}`);
    return socket;
  }

  updateNode(node) {
    const view = this.views.get(node.id);
    const card = this.catalog.cards.get(node.card);
    view.element.style.left = `${node.position.x}px`;
    view.element.style.top = `${node.position.y}px`;
    view.element.classList.toggle("selected", this.selected === node.id);
    for (const port of card ? card.inputs : []) {
      const set = Object.prototype.hasOwnProperty.call(node.params, port.id);
      const wired = this.store.edgeInto(node.id, port.id);
      const text = wired ? "" : set ? valueLabel(node.params[port.id]) : port.required ? "" : valueLabel(port.default);
      const value = view.values.get(port.id);
      value.textContent = text;
      value.classList.toggle("set", set);
    }
    for (const [key, socket] of view.sockets) {
      const [direction, port] = key.split(":");
      const armed = this.armed && this.armed.node === node.id && this.armed.port === port && this.armed.direction === direction;
      socket.classList.toggle("armed", Boolean(armed));
      socket.setAttribute("aria-pressed", armed ? "true" : "false");
    }
    this.showProblems(node.id);
  }

  /** Validation errors and values flagged in the form, on the node and the port at fault. */
  showProblems(nodeId) {
    const view = this.views.get(nodeId);
    const fromServer = this.validation.errors.filter((e) => e.node === nodeId);
    const fromForm = [...(this.store.fieldErrors.get(nodeId) || new Map())].map(([port, message]) => ({ port, message: `${message} (not sent)` }));
    const problems = [...fromForm, ...fromServer];
    view.problems.replaceChildren(...problems.map((p) => el("li", { text: `⚠ ${p.message}` })));
    view.element.classList.toggle("has-error", problems.length > 0);
    const faulty = new Set(problems.map((p) => p.port).filter(Boolean));
    for (const [port, row] of view.rows) row.classList.toggle("port-error", faulty.has(port));
    for (const [key, socket] of view.sockets) socket.classList.toggle("port-error", faulty.has(key.split(":")[1]));
  }

  setValidation(validation) {
    this.validation = validation;
    for (const id of this.views.keys()) this.showProblems(id);
    this.drawEdges();
  }

  socketCentre(nodeId, direction, portId, origin) {
    const view = this.views.get(nodeId);
    const socket = view && view.sockets.get(`${direction}:${portId}`);
    if (!socket) return null;
    const box = socket.getBoundingClientRect();
    return { x: box.left + box.width / 2 - origin.left, y: box.top + box.height / 2 - origin.top };
  }

  drawEdges() {
    const origin = this.world.getBoundingClientRect();
    const children = [];
    const labels = [];
    this.store.edges.forEach((edge, index) => {
      const from = this.socketCentre(edge.source, "out", edge.source_port, origin);
      const to = this.socketCentre(edge.target, "in", edge.target_port, origin);
      if (!from || !to) return;
      const port = this.store.port(edge.source, "out", edge.source_port);
      const color = (this.catalog.types.get(port.type) || {}).color || "#999";
      const bend = Math.max(40, Math.abs(to.x - from.x) / 2);
      const d = `M${from.x},${from.y} C${from.x + bend},${from.y} ${to.x - bend},${to.y} ${to.x},${to.y}`;
      const shape = shapeLabel((this.validation.shapes[edge.source] || {})[edge.source_port]);
      const faulty = this.validation.errors.some((e) => e.edge === index);
      const group = svg("g", { class: `edge${faulty ? " has-error" : ""}`, "data-testid": edgeTestId(edge), tabindex: "0", role: "button" });
      group.setAttribute("aria-label", `Wire ${edge.source}.${edge.source_port} to ${edge.target}.${edge.target_port}${shape ? `, shape ${shape}` : ""}. Delete removes it.`);
      group.edge = edge;
      group.append(svg("path", { d, class: "edge-hit" }), svg("path", { d, class: "edge-line", stroke: color }));
      if (shape) {
        group.append(svg("title", {}, `shape ${shape}`));
        labels.push(svg("text", { x: (from.x + to.x) / 2, y: (from.y + to.y) / 2 - 6, class: "edge-shape", "text-anchor": "middle" }, shape));
      }
      children.push(group);
    });
    if (this.draft) children.push(this.draft);
    this.wires.replaceChildren(...children);
    this.wireLabels.replaceChildren(...labels);
  }

  // -- selection and wiring -------------------------------------------------------------------

  select(id) {
    this.selected = id;
    for (const [nodeId, view] of this.views) view.element.classList.toggle("selected", nodeId === id);
    this.dispatchEvent(new CustomEvent("select", { detail: { id } }));
  }

  /** Adds a card where it was dropped; null when the point is outside the canvas. */
  dropCard(cardId, clientX, clientY) {
    const box = this.element.getBoundingClientRect();
    if (clientX < box.left || clientX > box.right || clientY < box.top || clientY > box.bottom) return null;
    const origin = this.world.getBoundingClientRect();
    return this.addCard(cardId, { x: Math.max(0, clientX - origin.left - 20), y: Math.max(0, clientY - origin.top - 15) });
  }

  /** A free spot for a card added with the keyboard: right of the right-most card, same top. */
  nextPosition() {
    let spot = null;
    for (const node of this.store.nodes.values()) {
      const right = node.position.x + this.views.get(node.id).element.offsetWidth + 60;
      if (!spot || right > spot.x) spot = { x: right, y: node.position.y };
    }
    return spot || { x: 40, y: 40 };
  }

  addCard(cardId, position = this.nextPosition()) {
    const id = this.store.addNode(cardId, position);
    this.select(id);
    this.notify(`Added ${this.catalog.cards.get(cardId).title} as node ${id}.`);
    return id;
  }

  wire(a, b) {
    const [output, input] = a.direction === "out" ? [a, b] : [b, a];
    if (output.direction !== "out" || input.direction !== "in") {
      this.notify("A wire joins an output socket (right side of a card) to an input socket (left side).", "error");
      return;
    }
    const result = this.store.connect(output.node, output.port, input.node, input.port);
    if (result.ok) this.notify(`Wired ${output.node}.${output.port} to ${input.node}.${input.port}.`);
    else this.notify(result.reason, "error");
  }

  /** Picks a socket for wiring by clicks or keys: the first pick arms it, the second wires. */
  pick(socket) {
    const picked = { node: socket.dataset.node, port: socket.dataset.port, direction: socket.dataset.direction };
    const armed = this.armed;
    if (armed && armed.direction !== picked.direction) {
      this.armed = null;
      this.wire(armed, picked);
    } else {
      this.armed = picked;
      this.notify(`Picked ${picked.node}.${picked.port}; now pick ${picked.direction === "out" ? "an input" : "an output"} socket to wire it (Escape cancels).`);
    }
    this.render();
    const view = this.views.get(picked.node);
    if (view) view.sockets.get(`${picked.direction}:${picked.port}`).focus();
  }

  // -- pointer gestures -----------------------------------------------------------------------

  onPointerDown(event) {
    if (event.button !== 0) return;
    const socket = event.target.closest(".socket");
    const header = event.target.closest(".node-header");
    const nodeElement = event.target.closest(".node");
    if (!socket && !nodeElement && !event.target.closest(".edge")) {
      this.select(null);
      return;
    }
    if (nodeElement && !socket) this.select(nodeElement.dataset.node);
    if (!socket && !header) return;
    event.preventDefault();
    const gesture = { start: { x: event.clientX, y: event.clientY }, dragging: false, socket, nodeElement };
    if (header) {
      const node = this.store.nodes.get(nodeElement.dataset.node);
      gesture.origin = { ...node.position };
    }
    this.world.setPointerCapture(event.pointerId);
    const move = (e) => this.onGestureMove(gesture, e);
    const up = (e) => {
      this.world.removeEventListener("pointermove", move);
      this.world.removeEventListener("pointerup", up);
      this.world.removeEventListener("pointercancel", up);
      this.onGestureEnd(gesture, e);
    };
    this.world.addEventListener("pointermove", move);
    this.world.addEventListener("pointerup", up);
    this.world.addEventListener("pointercancel", up);
  }

  onGestureMove(gesture, event) {
    const dx = event.clientX - gesture.start.x;
    const dy = event.clientY - gesture.start.y;
    if (!gesture.dragging && Math.hypot(dx, dy) < DRAG_THRESHOLD) return;
    gesture.dragging = true;
    if (gesture.socket) {
      const origin = this.world.getBoundingClientRect();
      const s = gesture.socket.dataset;
      const from = this.socketCentre(s.node, s.direction, s.port, origin);
      const to = { x: event.clientX - origin.left, y: event.clientY - origin.top };
      const [a, b] = s.direction === "out" ? [from, to] : [to, from];
      this.draft = svg("path", { class: "edge-draft", d: `M${a.x},${a.y} C${a.x + 60},${a.y} ${b.x - 60},${b.y} ${b.x},${b.y}` });
      this.drawEdges();
    } else {
      const id = gesture.nodeElement.dataset.node;
      const position = { x: Math.max(0, gesture.origin.x + dx), y: Math.max(0, gesture.origin.y + dy) };
      gesture.nodeElement.style.left = `${position.x}px`;
      gesture.nodeElement.style.top = `${position.y}px`;
      gesture.position = position;
      this.drawEdges();
      gesture.nodeId = id;
    }
  }

  onGestureEnd(gesture, event) {
    if (!gesture.dragging) return;
    this.justDragged = true;
    setTimeout(() => { this.justDragged = false; }, 0);
    if (gesture.socket) {
      this.draft = null;
      const target = document.elementFromPoint(event.clientX, event.clientY);
      const socket = target && target.closest(".socket");
      if (socket && socket !== gesture.socket) {
        this.wire(gesture.socket.dataset, socket.dataset);
      } else {
        this.notify("Wire dropped away from a socket: nothing was connected.");
      }
      this.drawEdges();
    } else if (gesture.position) {
      this.store.moveNode(gesture.nodeId, gesture.position);
    }
  }

  onClick(event) {
    if (this.justDragged) return;
    const socket = event.target.closest(".socket");
    if (socket) this.pick(socket);
  }

  onKeyDown(event) {
    if (event.key === "Escape" && this.armed) {
      this.armed = null;
      this.notify("Wiring cancelled.");
      this.render();
      return;
    }
    const edgeGroup = event.target.closest(".edge");
    if (edgeGroup && (event.key === "Delete" || event.key === "Backspace")) {
      this.store.disconnect(edgeGroup.edge);
      this.notify("Wire removed.");
      return;
    }
    const header = event.target.closest(".node-header");
    if (!header) return;
    const id = header.closest(".node").dataset.node;
    const steps = { ArrowLeft: [-10, 0], ArrowRight: [10, 0], ArrowUp: [0, -10], ArrowDown: [0, 10] };
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      this.select(id);
    } else if (event.key === "Delete" || event.key === "Backspace") {
      this.store.removeNode(id);
      this.notify(`Removed node ${id}.`);
    } else if (steps[event.key]) {
      event.preventDefault();
      const { x, y } = this.store.nodes.get(id).position;
      this.store.moveNode(id, { x: Math.max(0, x + steps[event.key][0]), y: Math.max(0, y + steps[event.key][1]) });
      header.focus();
    }
  }
}
