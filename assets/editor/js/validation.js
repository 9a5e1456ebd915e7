// Live validation: after each change the graph goes to POST /api/v1/graphs/validate; inferred
// shapes go onto the wires, errors onto the node and port at fault and into the errors panel.

import { api } from "./api.js";
import { el } from "./dom.js";

const DELAY_MS = 250;

function item(text, code) {
  return el("li", { text }, ...(code ? [el("code", { text: ` ${code}` })] : []));
}

export class LiveValidation {
  constructor(panel, store, canvas) {
    this.panel = panel;
    this.store = store;
    this.canvas = canvas;
    this.timer = null;
    this.sequence = 0;
    this.result = { valid: true, errors: [], shapes: {} };
    this.pending = false;
    this.failure = null;
  }

  schedule() {
    clearTimeout(this.timer);
    this.pending = true;
    this.render();
    this.timer = setTimeout(() => this.validate(), DELAY_MS);
  }

  async validate() {
    const sequence = ++this.sequence;
    const graph = this.store.toJSON();
    let result;
    let failure = null;
    if (!graph.nodes.length) {
      result = { valid: true, errors: [], shapes: {} };
    } else {
      try {
        result = await api.validate(graph);
      } catch (error) {
        failure = `Validation request failed: ${error.message}`;
        result = { valid: false, errors: (error.error && error.error.errors) || [], shapes: {} };
      }
    }
    if (sequence !== this.sequence) return; // a newer graph is being checked
    this.pending = false;
    this.result = result;
    this.failure = failure;
    this.canvas.setValidation(result);
    this.render();
  }

  /** The errors panel: values flagged in the form, then the server's findings. */
  render() {
    const lines = [];
    for (const [node, errors] of this.store.fieldErrors) {
      for (const [port, message] of errors) lines.push(item(`${node} · ${port}: ${message} (not sent)`, "flagged in the form"));
    }
    if (this.failure) lines.push(item(this.failure));
    for (const error of this.result.errors) {
      const where = [error.node, error.port].filter((x) => x !== undefined && x !== null).join(" · ");
      const edge = error.edge !== undefined && error.edge !== null ? ` (wire ${error.edge + 1})` : "";
      lines.push(item(`${where ? `${where}: ` : ""}${error.message}${edge}`, error.code));
    }
    const status = el("p", { class: "status" });
    if (this.pending) status.textContent = "Checking the graph…";
    else if (!this.store.nodes.size) status.textContent = "The canvas is empty: drag cards from the palette.";
    else if (!lines.length) status.textContent = "The graph is valid.";
    else status.textContent = `${lines.length} problem${lines.length === 1 ? "" : "s"}:`;
    const list = el("ul", {}, ...lines);
    this.panel.replaceChildren(status, list);
    this.panel.classList.toggle("has-error", lines.length > 0);
  }
}
