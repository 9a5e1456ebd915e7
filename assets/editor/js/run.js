// The Run panel: a training call then an inference call on seeded random data, or a fit on
// pasted CSV / uploaded .npy data followed by a prediction; progress and the loss curve come
// from the run's server-sent events, the results from GET /api/v1/runs/{id}.

import { api, ApiError } from "./api.js";
import { drawCurve } from "./chart.js";
import { el } from "./dom.js";
import { parseCsv, parseNpy, randomInputs, RANDOM_BATCH, RANDOM_SEED } from "./data.js";

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

/** An ARRAY as compact text: numbers to 6 significant digits, nesting kept. */
export function formatArray(value) {
  if (Array.isArray(value)) return `[${value.map(formatArray).join(", ")}]`;
  if (typeof value === "number") return String(Number(value.toPrecision(6)));
  if (value && typeof value === "object" && "shape" in value) return `${value.dtype} array of shape (${value.shape.join(", ")})`;
  return JSON.stringify(value);
}

function nodesOf(graph, cardId) {
  return graph.nodes.filter((n) => n.card === cardId);
}

export class RunPanel {
  constructor(element, store, validation) {
    this.element = element;
    this.store = store;
    this.validation = validation;
    this.button = element.querySelector("[data-testid=run]");
    this.cancel = element.querySelector(".run-cancel");
    this.status = element.querySelector(".run-status");
    this.result = element.querySelector("[data-testid=run-result]");
    this.curve = element.querySelector("[data-testid=loss-curve]");
    this.fitOptions = element.querySelector(".fit-options");
    this.sources = element.querySelector(".fit-sources");
    this.data = new Map(); // "inputs:<node>" / "targets:<node>" → {text, npy, fileName}
    this.runId = null;
    this.events = null;
    element.querySelectorAll("input[name=run-mode]").forEach((radio) => radio.addEventListener("change", () => this.refresh()));
    this.button.addEventListener("click", () => this.start());
    this.cancel.addEventListener("click", () => this.stop());
    this.refresh();
  }

  get mode() {
    return this.element.querySelector("input[name=run-mode]:checked").value;
  }

  /** Redraws the per-node data boxes of a fit when the graph's inputs or outputs change. */
  refresh() {
    this.fitOptions.hidden = this.mode !== "fit";
    if (this.mode !== "fit" || this.sources.contains(document.activeElement)) return;
    const graph = this.store.toJSON();
    const boxes = [];
    for (const [role, card, what] of [["inputs", "input", "Input"], ["targets", "output", "Target"]]) {
      for (const node of nodesOf(graph, card)) boxes.push(this.sourceBox(role, node.id, `${what} data for ${node.id}`));
    }
    this.sources.replaceChildren(...(boxes.length ? boxes : [el("p", { class: "muted", text: "Add Input and Output cards to fit." })]));
  }

  sourceBox(role, nodeId, label) {
    const key = `${role}:${nodeId}`;
    const entry = this.data.get(key) || { text: "", npy: null, fileName: "" };
    this.data.set(key, entry);
    const text = el("textarea", { rows: "3", placeholder: "CSV: one sample per line", "data-testid": `fit-${role}-${nodeId}`, spellcheck: "false" });
    text.value = entry.text;
    text.addEventListener("input", () => { entry.text = text.value; entry.npy = null; note.textContent = ""; });
    const file = el("input", { type: "file", accept: ".npy,.csv,.txt", "aria-label": `${label}: .npy or .csv file` });
    const note = el("small", { class: "muted", text: entry.fileName ? `Using ${entry.fileName}` : "" });
    file.addEventListener("change", async () => {
      const chosen = file.files[0];
      if (!chosen) return;
      try {
        if (chosen.name.endsWith(".npy")) {
          entry.npy = parseNpy(await chosen.arrayBuffer(), chosen.name);
          entry.text = "";
          text.value = "";
          note.textContent = `Using ${chosen.name}: ${entry.npy.dtype} (${entry.npy.shape.join(", ")})`;
        } else {
          entry.text = await chosen.text();
          entry.npy = null;
          text.value = entry.text;
          note.textContent = "";
        }
        entry.fileName = chosen.name;
      } catch (error) {
        note.textContent = error.message;
      }
    });
    return el("div", { class: "field" }, el("span", { class: "field-label", text: label }), text, file, note);
  }

  arrayFor(role, nodeId, sampleShape) {
    const entry = this.data.get(`${role}:${nodeId}`);
    const label = `${role === "inputs" ? "Input" : "Target"} data for ${nodeId}`;
    if (!entry || (!entry.npy && !entry.text.trim())) throw new Error(`${label} is missing: paste CSV or choose a .npy file.`);
    return entry.npy || parseCsv(entry.text, sampleShape, label);
  }

  randomSteps(graph) {
    const inputs = nodesOf(graph, "input").map((node) => {
      const shape = node.params.shape;
      if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d))) {
        throw new Error(`Input ${node.id} needs a fixed shape (whole numbers, no null) to run on random data.`);
      }
      return { id: node.id, shape, dtype: node.params.dtype || "float32" };
    });
    if (!inputs.length) throw new Error("Add an Input card first.");
    const data = randomInputs(inputs);
    return {
      data,
      steps: [
        { kind: "call", inputs: data, training: true },
        { kind: "call", inputs: data, training: false },
      ],
    };
  }

  fitSteps(graph) {
    const shapes = this.validation.result.shapes;
    const inputs = {};
    for (const node of nodesOf(graph, "input")) inputs[node.id] = this.arrayFor("inputs", node.id, node.params.shape);
    const targets = {};
    for (const node of nodesOf(graph, "output")) {
      const wire = graph.edges.find((e) => e.target === node.id);
      const shape = wire && (shapes[wire.source] || {})[wire.source_port];
      targets[node.id] = this.arrayFor("targets", node.id, Array.isArray(shape) ? shape.slice(1) : null);
    }
    const number = (name) => Number(this.element.querySelector(`[name=${name}]`).value);
    const fit = {
      kind: "fit", inputs, targets,
      epochs: number("epochs"), batch_size: number("batch_size"),
      optimizer: { name: this.element.querySelector("[name=optimizer]").value, learning_rate: number("learning_rate") },
      loss: this.element.querySelector("[name=loss]").value,
    };
    return { data: null, steps: [fit, { kind: "predict", inputs }] };
  }

  async start() {
    const graph = this.store.toJSON();
    let plan;
    try {
      plan = this.mode === "fit" ? this.fitSteps(graph) : this.randomSteps(graph);
    } catch (error) {
      this.showStatus(error.message, true);
      return;
    }
    this.series = {};
    this.epochs = (plan.steps.find((s) => s.kind === "fit") || {}).epochs || 0;
    this.curve.hidden = !this.epochs;
    if (this.epochs) drawCurve(this.curve, this.series, this.epochs);
    this.result.replaceChildren();
    this.plan = plan;
    this.button.disabled = true;
    this.showStatus("Starting the run…");
    try {
      const started = await api.startRun({ graph, seed: RANDOM_SEED, steps: plan.steps });
      this.runId = started.run_id;
      this.cancel.hidden = false;
      this.showStatus(`Run ${this.runId}: ${started.status}`);
      this.follow(this.runId);
    } catch (error) {
      this.button.disabled = false;
      this.showStatus(error instanceof ApiError ? `The run was refused: ${error.message}` : error.message, true);
      if (error instanceof ApiError) this.result.replaceChildren(this.errorBlock(error.error));
    }
  }

  follow(runId) {
    const events = new EventSource(api.eventsUrl(runId));
    this.events = events;
    events.addEventListener("status", (e) => this.showStatus(`Run ${runId}: ${JSON.parse(e.data).status}`));
    events.addEventListener("step", (e) => {
      const step = JSON.parse(e.data);
      this.showStatus(`Run ${runId}: step ${step.index + 1} (${step.kind}) ${step.state}`);
    });
    events.addEventListener("epoch", (e) => {
      const epoch = JSON.parse(e.data);
      for (const [metric, value] of Object.entries(epoch.metrics)) (this.series[metric] ||= []).push(value);
      this.epochs = epoch.epochs;
      drawCurve(this.curve, this.series, epoch.epochs);
    });
    events.addEventListener("done", () => {
      events.close();
      this.finish(runId);
    });
    events.onerror = () => {
      // The stream broke before "done": read the run until it has finished instead.
      if (events.readyState === EventSource.CLOSED || this.events !== events) return;
      events.close();
      this.poll(runId);
    };
  }

  async poll(runId) {
    for (;;) {
      const result = await api.run(runId);
      if (FINISHED.has(result.status)) return this.show(result);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  async finish(runId) {
    try {
      this.show(await api.run(runId));
    } catch (error) {
      this.showStatus(`Could not read run ${runId}: ${error.message}`, true);
      this.button.disabled = false;
    }
  }

  async stop() {
    if (!this.runId) return;
    try {
      await api.cancelRun(this.runId);
    } catch (error) {
      this.showStatus(error.message, true);
    }
  }

  showStatus(text, isError = false) {
    this.status.textContent = text;
    this.status.classList.toggle("field-error", isError);
  }

  errorBlock(error) {
    const list = el("ul");
    for (const e of error.errors || []) {
      list.append(el("li", { text: `${[e.node, e.port].filter((x) => x != null).join(" · ")}${e.node != null ? ": " : ""}${e.message}` }));
    }
    return el("div", { class: "run-error", role: "alert" }, el("p", { text: `${error.code}: ${error.message}` }), list);
  }

  show(result) {
    this.events = null;
    this.button.disabled = false;
    this.cancel.hidden = true;
    this.showStatus(`Run ${result.run_id}: ${result.status}`, result.status !== "succeeded");
    const parts = [el("p", { class: "run-id", "data-run-id": result.run_id, text: `Run ${result.run_id} ${result.status}.` })];
    if (result.error) parts.push(this.errorBlock(result.error));
    if (this.plan.data) {
      const details = el("details", {}, el("summary", { text: `Random input data (seed ${RANDOM_SEED}, batch ${RANDOM_BATCH})` }));
      for (const [id, values] of Object.entries(this.plan.data)) {
        details.append(el("h4", { text: id }), el("pre", { "data-testid": `run-input-${id}`, text: JSON.stringify(values) }));
      }
      parts.push(details);
    }
    result.steps.forEach((step, index) => {
      const planned = this.plan.steps[index] || {};
      const title = `Step ${index + 1}: ${step.kind}${step.kind === "call" ? (planned.training ? " (training)" : " (inference)") : ""}`;
      const block = el("div", { class: "run-step" }, el("h4", { text: title }));
      for (const [id, value] of Object.entries(step.outputs || {})) {
        block.append(el("div", { class: "output-label", text: `Output ${id}` }), el("pre", { "data-testid": `run-output-${index}-${id}`, text: formatArray(value) }));
      }
      for (const [metric, values] of Object.entries(step.history || step.metrics || {})) {
        const shown = Array.isArray(values) ? values : [values];
        block.append(el("div", { text: `${metric}: ${shown.map((v) => Number(v.toPrecision(4))).join(" → ")}` }));
      }
      parts.push(block);
    });
    for (const [id, layer] of Object.entries(result.layers || {})) {
      const block = el("div", { class: "run-layer" }, el("h4", { text: `${id} (${layer.class})` }));
      const table = el("table");
      const names = Object.keys(layer.weights || {}).sort((a, b) => Number(b.startsWith("moving")) - Number(a.startsWith("moving")));
      for (const name of names) {
        table.append(el("tr", {}, el("th", { text: name.replaceAll("_", " ") }),
          el("td", {}, el("code", { "data-testid": `run-weight-${id}-${name}`, text: formatArray(layer.weights[name]) }))));
      }
      block.append(table);
      parts.push(block);
    }
    this.result.replaceChildren(...parts);
    // Bring the results into view, starting from the loss curve when there is one.
    if (this.curve.hidden) this.result.scrollIntoView({ block: "nearest" });
    else this.curve.scrollIntoView({ block: "start" });
  }
}
