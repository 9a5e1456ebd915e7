// The run slice of the store: what Run sends (a training call then an inference call on a seeded
// random batch, or a fit on the user's data followed by a prediction), the progress read from
// the run's server-sent events, the finished RUN RESULT, and the list of past runs. Card
// statistics: an `inspect` step at the end of the run and a fit's `inspect_every`, their
// passes kept as they arrive (`inspect` events) and then as the result holds them.

import type { StateCreator } from "zustand";
import { api, ApiError } from "./api";
import { firstSamples, parseCsv, randomInputs, type NpyArray } from "./data";
import type { ApiErrorBody, Graph, Inspection, RunResult, RunSummary } from "./types";
import type { EditorState } from "./store";
import { draftProblems, structureKey } from "./store";

export const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

export interface FitSettings {
  epochs: string;
  batch_size: string;
  optimizer: string;
  learning_rate: string;
  loss: string;
  metrics: string;
}

export interface DataSource {
  text: string;
  npy: NpyArray | null;
  note: string;
}

export interface EpochUpdate {
  step: number;
  epoch: number;
  epochs: number;
  metrics: Record<string, number>;
}

/** What the user asked to inspect (the Run panel's "Card statistics"). */
export interface InspectSettings {
  /** An `inspect` step of every card at the end of the run. */
  after: boolean;
  /** That pass in training mode (this batch's statistics) rather than inference mode (moving ones). */
  training: boolean;
  /** A fit's `inspect_every`: whether, and every how many epochs. */
  during: boolean;
  every: string;
}

/** One pass of card statistics, from a fit's `inspect_every` (`epoch` set) or an `inspect` step. */
export interface InspectionPass extends Inspection {
  step: number;
}

export interface Plan {
  data: Record<string, unknown> | null;
  steps: Record<string, unknown>[];
}

export interface CurrentRun {
  runId: string | null;
  status: string;
  progress: string;
  epochs: EpochUpdate[];
  inspections: InspectionPass[];
  result: RunResult | null;
  plan: Plan | null;
  /** A refusal or failure before the run existed (request error, bad data). */
  refusal: ApiErrorBody | null;
  /** The graph's structure when the run started. */
  structure: string;
}

export interface RunSlice {
  runMode: "random" | "fit";
  fit: FitSettings;
  fitData: Record<string, DataSource>;
  inspect: InspectSettings;
  current: CurrentRun | null;
  runs: RunSummary[];
  runsTotal: number;
  setRunMode(mode: "random" | "fit"): void;
  setFit(settings: Partial<FitSettings>): void;
  setFitData(key: string, source: DataSource): void;
  setInspect(settings: Partial<InspectSettings>): void;
  startRun(): Promise<void>;
  cancelRun(): Promise<void>;
  openRun(runId: string): Promise<void>;
  refreshRuns(): Promise<void>;
  clearRun(): void;
}

let following: AbortController | null = null;

/** Why Run cannot start now (null: it can). */
export function runBlocker(state: EditorState): string | null {
  if (!state.nodes.length) return "The canvas is empty.";
  const drafts = draftProblems(state.drafts);
  if (drafts.length) {
    const first = drafts[0];
    return `Run is off while a field holds a value that cannot be used: ${first.node} · ${first.message}${drafts.length > 1 ? ` (and ${drafts.length - 1} more)` : ""}.`;
  }
  if (state.current && state.current.runId && !FINISHED.has(state.current.status)) return "A run is in progress.";
  if (!state.validation.pending && !state.validation.valid && state.validation.errors.length) {
    const n = state.validation.errors.length;
    return `Fix the graph first: ${n} problem${n === 1 ? "" : "s"} (listed under the canvas).`;
  }
  return null;
}

const inputNodes = (graph: Graph) => graph.nodes.filter((n) => n.card === "input");
const outputNodes = (graph: Graph) => graph.nodes.filter((n) => n.card === "output");

function randomPlan(state: EditorState, graph: Graph): Plan {
  const inputs = inputNodes(graph).map((node) => {
    const shape = node.params.shape;
    if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d))) {
      throw new Error(`Input ${node.id} needs a fixed shape (whole numbers, no null) to run on random data.`);
    }
    return { id: node.id, shape: shape as number[], dtype: (node.params.dtype as string) || "float32" };
  });
  if (!inputs.length) throw new Error("Add an Input card first.");
  const data = randomInputs(inputs);
  return {
    data,
    steps: [
      { kind: "call", inputs: data, training: true },
      { kind: "call", inputs: data, training: false },
      ...inspectSteps(state, data),
    ],
  };
}

function fitPlan(state: EditorState, graph: Graph): Plan {
  const array = (role: string, nodeId: string, shape: (number | null)[] | null) => {
    const label = `${role === "inputs" ? "Input" : "Target"} data for ${nodeId}`;
    const source = state.fitData[`${role}:${nodeId}`];
    if (!source || (!source.npy && !source.text.trim())) throw new Error(`${label} is missing: paste CSV or choose a .npy file.`);
    return source.npy || parseCsv(source.text, shape, label);
  };
  const inputs: Record<string, unknown> = {};
  for (const node of inputNodes(graph)) inputs[node.id] = array("inputs", node.id, (node.params.shape as (number | null)[]) || null);
  if (!Object.keys(inputs).length) throw new Error("Add an Input card first.");
  const targets: Record<string, unknown> = {};
  for (const node of outputNodes(graph)) {
    const wire = graph.edges.find((e) => e.target === node.id);
    const shape = wire ? (state.validation.shapes[wire.source] || {})[wire.source_port] : null;
    targets[node.id] = array("targets", node.id, Array.isArray(shape) && !Array.isArray(shape[0]) ? (shape.slice(1) as (number | null)[]) : null);
  }
  const whole = (name: keyof FitSettings, min: number) => {
    const value = Number(state.fit[name]);
    if (!Number.isInteger(value) || value < min) throw new Error(`${name.replace("_", " ")} must be a whole number of at least ${min}, got "${state.fit[name]}".`);
    return value;
  };
  const rate = Number(state.fit.learning_rate);
  if (!Number.isFinite(rate) || rate <= 0) throw new Error(`The learning rate must be a positive number, got "${state.fit.learning_rate}".`);
  const metrics = state.fit.metrics.split(/[\s,]+/).filter(Boolean);
  const batchSize = whole("batch_size", 1);
  const fit: Record<string, unknown> = {
    kind: "fit", inputs, targets, epochs: whole("epochs", 1), batch_size: batchSize,
    optimizer: { name: state.fit.optimizer, learning_rate: rate }, loss: state.fit.loss, metrics,
  };
  if (state.inspect.during) {
    const every = Number(state.inspect.every);
    if (!Number.isInteger(every) || every < 1) throw new Error(`Inspect every … epochs must be a whole number of at least 1, got "${state.inspect.every}".`);
    fit.inspect_every = every;
  }
  const firstBatch = Object.fromEntries(Object.entries(inputs).map(([id, array]) => [id, firstSamples(array, batchSize)]));
  return { data: null, steps: [fit, { kind: "predict", inputs }, ...inspectSteps(state, firstBatch)] };
}

/** The `inspect` step the user asked for at the end of the run, on the given batch. */
function inspectSteps(state: EditorState, inputs: Record<string, unknown>): Record<string, unknown>[] {
  return state.inspect.after ? [{ kind: "inspect", inputs, training: state.inspect.training }] : [];
}

/** Every pass of card statistics a finished run holds, in the order they ran. */
function resultPasses(result: RunResult): InspectionPass[] {
  return result.steps.flatMap((step, index): InspectionPass[] => {
    if (step.kind === "fit") return (step.inspections || []).map((pass) => ({ ...pass, step: index }));
    if (step.nodes) return [{ epoch: step.epoch ?? null, training: Boolean(step.training), nodes: step.nodes, step: index }];
    return [];
  });
}

export const createRunSlice: StateCreator<EditorState, [], [], RunSlice> = (set, get) => {
  const patch = (change: Partial<CurrentRun>) => {
    const current = get().current;
    if (current) set({ current: { ...current, ...change } });
  };

  async function finish(runId: string) {
    for (;;) {
      const result = await api.run(runId);
      if (get().current?.runId !== runId) return;
      if (FINISHED.has(result.status)) {
        // A fit that failed is not in the result: the passes its events brought stay.
        const kept = resultPasses(result);
        const inspections = kept.length >= (get().current?.inspections.length || 0) ? kept : get().current!.inspections;
        patch({ result, status: result.status, progress: `Run ${runId}: ${result.status}`, inspections });
        void get().refreshRuns();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  async function follow(runId: string) {
    following?.abort();
    const controller = new AbortController();
    following = controller;
    try {
      await api.followEvents(runId, ({ event, data }) => {
        if (get().current?.runId !== runId) return;
        if (event === "status") patch({ status: data.status, progress: `Run ${runId}: ${data.status}` });
        else if (event === "step") patch({ progress: `Step ${data.index + 1} (${data.kind}) ${data.state}` });
        else if (event === "epoch") {
          const epochs = [...(get().current?.epochs || []), data as EpochUpdate];
          patch({ epochs, progress: `Epoch ${data.epoch}/${data.epochs}` });
        } else if (event === "inspect") {
          patch({ inspections: [...(get().current?.inspections || []), { ...data.inspection, step: data.step }] });
        }
      }, controller.signal);
    } catch (error) {
      if (controller.signal.aborted) return;
      // The stream broke: read the run until it has finished instead.
    }
    if (!controller.signal.aborted && get().current?.runId === runId) {
      try {
        await finish(runId);
      } catch (error) {
        patch({ progress: `Could not read run ${runId}: ${(error as Error).message}`, status: "unknown" });
      }
    }
  }

  return {
    runMode: "random",
    fit: { epochs: "5", batch_size: "8", optimizer: "adam", learning_rate: "0.01", loss: "mse", metrics: "mae" },
    fitData: {},
    inspect: { after: false, training: false, during: false, every: "1" },
    current: null,
    runs: [],
    runsTotal: 0,

    setRunMode(mode) {
      set({ runMode: mode });
    },
    setFit(settings) {
      set({ fit: { ...get().fit, ...settings } });
    },
    setFitData(key, source) {
      set({ fitData: { ...get().fitData, [key]: source } });
    },
    setInspect(settings) {
      set({ inspect: { ...get().inspect, ...settings } });
    },

    async startRun() {
      const state = get();
      const blocker = runBlocker(state);
      if (blocker) {
        state.notify(blocker, "error");
        return;
      }
      const graph = state.graph();
      const structure = structureKey(state);
      const empty: CurrentRun = { runId: null, status: "refused", progress: "", epochs: [], inspections: [], result: null, plan: null, refusal: null, structure };
      let plan: Plan;
      try {
        plan = state.runMode === "fit" ? fitPlan(state, graph) : randomPlan(state, graph);
      } catch (error) {
        set({ current: { ...empty, refusal: { code: "run_not_started", message: (error as Error).message } } });
        return;
      }
      set({ current: { ...empty, status: "starting", progress: "Starting the run…", plan } });
      try {
        const started = await api.startRun({ graph, seed: 0, steps: plan.steps });
        patch({ runId: started.run_id, status: started.status, progress: `Run ${started.run_id}: ${started.status}` });
        void get().refreshRuns();
        void follow(started.run_id);
      } catch (error) {
        const body = error instanceof ApiError ? error.error : { code: "request_failed", message: (error as Error).message };
        patch({ status: "refused", progress: "", refusal: body });
      }
    },

    async cancelRun() {
      const runId = get().current?.runId;
      if (!runId) return;
      try {
        await api.cancelRun(runId);
      } catch (error) {
        get().notify(`Could not cancel run ${runId}: ${(error as Error).message}`, "error");
      }
    },

    async openRun(runId) {
      following?.abort();
      set({ current: { runId, status: "loading", progress: `Opening run ${runId}…`, epochs: [], inspections: [], result: null, plan: null, refusal: null, structure: "" } });
      try {
        const result = await api.run(runId);
        if (get().current?.runId !== runId) return;
        if (FINISHED.has(result.status)) {
          const epochs = historyEpochs(result);
          patch({ result, status: result.status, progress: `Run ${runId}: ${result.status}`, epochs, inspections: resultPasses(result) });
        } else {
          patch({ status: result.status, progress: `Run ${runId}: ${result.status}` });
          void follow(runId);
        }
      } catch (error) {
        patch({ status: "unknown", refusal: error instanceof ApiError ? error.error : { code: "request_failed", message: (error as Error).message } });
      }
    },

    async refreshRuns() {
      try {
        const page = await api.runs(20);
        set({ runs: page.runs, runsTotal: page.total });
      } catch (error) {
        get().notify(`Could not list the runs: ${(error as Error).message}`, "error");
      }
    },

    clearRun() {
      const current = get().current;
      if (current && current.runId && !FINISHED.has(current.status)) return; // still following it
      if (current) set({ current: null });
    },
  };
};

/** The epochs of a finished run's fit steps, from their histories (for runs opened later). */
function historyEpochs(result: RunResult): EpochUpdate[] {
  const list: EpochUpdate[] = [];
  result.steps.forEach((step, index) => {
    if (step.kind !== "fit" || !step.history) return;
    const names = Object.keys(step.history);
    const count = Math.max(0, ...names.map((n) => step.history![n].length));
    for (let e = 0; e < count; e += 1) {
      list.push({ step: index, epoch: e + 1, epochs: count, metrics: Object.fromEntries(names.map((n) => [n, step.history![n][e]])) });
    }
  });
  return list;
}
