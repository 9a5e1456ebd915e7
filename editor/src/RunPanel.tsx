// The run panel: what Run sends, its progress epoch by epoch, curves for every metric, the
// results (outputs, and per layer a summary of each weight with its full values behind an
// expander), the whole error text, and the list of past runs kept by the server. What to
// inspect (card statistics, shown on the cards and in the selected card's panel) is chosen here.

import { lazy, Suspense, useEffect, useRef } from "react";
import { parseNpy } from "./data";
import { FINISHED, type CurrentRun } from "./run";
import { Bars, fmt } from "./Sketches";
import { useEditor } from "./store";
import type { ApiErrorBody, LayerResult, RunResult } from "./types";

// The chart library is loaded with the first fit, not with the editor.
const Curves = lazy(() => import("./Chart").then((module) => ({ default: module.Curves })));

/** An ARRAY's shape and its numbers in C order (null when it is not a nested list). */
function flatten(value: unknown): { shape: number[]; values: number[] } | null {
  if (!Array.isArray(value)) return typeof value === "number" ? { shape: [], values: [value] } : null;
  const shape: number[] = [];
  let level: unknown = value;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0];
  }
  const values = (value as unknown[]).flat(Infinity).map((v) => (typeof v === "number" ? v : Number(v)));
  return { shape, values };
}

function Histogram({ values }: { values: number[] }) {
  const finite = values.filter(Number.isFinite);
  if (finite.length < 2) return null;
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  const bins = new Array(12).fill(0);
  for (const v of finite) bins[hi > lo ? Math.min(11, Math.floor(((v - lo) / (hi - lo)) * 12)) : 0] += 1;
  return <Bars counts={bins} width={60} height={16} label={`histogram of ${finite.length} values from ${fmt(lo)} to ${fmt(hi)}`} />;
}

function download(name: string, content: unknown) {
  const blob = new Blob([JSON.stringify(content, null, 1)], { type: "application/json" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

/** One array: shape, min/mean/max and a histogram, the full values behind an expander. */
function ArrayRow({ label, value, testid, open }: { label: string; value: unknown; testid: string; open?: boolean }) {
  const flat = flatten(value);
  if (!flat) {
    const v = value as { dtype?: string; shape?: number[] };
    return <tr><th>{label}</th><td colSpan={3}>{v && v.shape ? `${v.dtype} array of shape (${v.shape.join(", ")})` : JSON.stringify(value)}</td></tr>;
  }
  const { shape, values } = flat;
  const finite = values.filter(Number.isFinite);
  const mean = finite.reduce((a, b) => a + b, 0) / (finite.length || 1);
  return (
    <>
      <tr className="array-head">
        <th>{label}</th>
        <td className="shape">({shape.join(", ")})</td>
        <td className="stats">{finite.length ? <>min {fmt(Math.min(...finite))} · mean {fmt(mean)} · max {fmt(Math.max(...finite))}</> : "no finite values"}</td>
        <td><Histogram values={values} /></td>
      </tr>
      <tr className="array-values">
        <td colSpan={4}>
          <details open={open}>
            <summary>{values.length} value{values.length === 1 ? "" : "s"}</summary>
            <pre data-testid={testid}>{JSON.stringify(value)}</pre>
          </details>
        </td>
      </tr>
    </>
  );
}

function ErrorBlock({ error }: { error: ApiErrorBody }) {
  return (
    <div className="run-error" role="alert" data-testid="run-error">
      <p><code>{error.code}</code></p>
      <pre className="error-text">{error.message}</pre>
      {error.errors && error.errors.length > 0 && (
        <ul>
          {error.errors.map((e, i) => (
            <li key={i}>{[e.node, e.port].filter((x) => x != null).join(" · ")}{e.node != null ? ": " : ""}{e.message}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

function Layer({ id, layer }: { id: string; layer: LayerResult }) {
  const names = Object.keys(layer.weights || {}).sort((a, b) => Number(b.startsWith("moving")) - Number(a.startsWith("moving")));
  // Facts a card adds of its own (batch normalization's `fused_kernel`, ...), whatever they are.
  const facts = Object.entries(layer)
    .filter(([key, value]) => !["class", "config", "weights"].includes(key) && value !== null && typeof value !== "object")
    .map(([key, value]) => `${key.replaceAll("_", " ")}: ${typeof value === "boolean" ? (value ? "yes" : "no") : String(value)}`);
  return (
    <div className="run-layer" data-testid={`run-layer-${id}`}>
      <h4>
        {id} <span className="muted">{[layer.class, ...facts].join(" · ")}</span>
        {names.length > 0 && <button type="button" className="small" onClick={() => download(`${id}-weights.json`, layer.weights)}>Download</button>}
      </h4>
      {names.length ? (
        <table className="weights">
          <tbody>
            {names.map((name) => (
              <ArrayRow key={name} label={name.replaceAll("_", " ")} value={layer.weights![name]} testid={`run-weight-${id}-${name}`}
                open={name.startsWith("moving") && (flatten(layer.weights![name])?.values.length || 0) <= 32} />
            ))}
          </tbody>
        </table>
      ) : <p className="muted">No weights.</p>}
    </div>
  );
}

function Result({ run, result }: { run: CurrentRun; result: RunResult }) {
  const plan = run.plan;
  return (
    <>
      {result.error && <ErrorBlock error={result.error} />}
      {plan?.data && (
        <details className="run-inputs">
          <summary>Random input data (seed 0, batch 8)</summary>
          {Object.entries(plan.data).map(([id, values]) => (
            <div key={id}><h4>{id}</h4><pre data-testid={`run-input-${id}`}>{JSON.stringify(values)}</pre></div>
          ))}
        </details>
      )}
      {result.steps.map((step, index) => {
        const planned = (plan?.steps[index] || {}) as { training?: boolean };
        const training = step.training ?? planned.training;
        const mode = step.kind === "call" || step.kind === "inspect" ? (training ? " (training)" : " (inference)") : "";
        const inspected = step.nodes || step.inspections?.[0]?.nodes;
        const title = `Step ${index + 1}: ${step.kind}${mode}`;
        return (
          <div className="run-step" key={index}>
            <h4>{title}</h4>
            {step.outputs && (
              <table className="weights"><tbody>
                {Object.entries(step.outputs).map(([id, value]) => (
                  <ArrayRow key={id} label={`output ${id}`} value={value} testid={`run-output-${index}-${id}`} />
                ))}
              </tbody></table>
            )}
            {inspected && (
              <p className="muted" data-testid={`run-inspected-${index}`}>
                Statistics of {Object.keys(inspected).length} cards{step.inspections ? `, ${step.inspections.length} times during the fit` : ""}:
                {" "}a histogram badge on each card; select a card for its panel.
              </p>
            )}
            {Object.entries(step.history || step.metrics || {}).map(([metric, values]) => (
              <div key={metric}>{metric}: {(Array.isArray(values) ? values : [values]).map((v) => fmt(v)).join(" → ")}</div>
            ))}
          </div>
        );
      })}
      {result.model && <p className="muted">Model: {result.model.params} parameters.</p>}
      {Object.entries(result.layers || {}).map(([id, layer]) => <Layer key={id} id={id} layer={layer} />)}
      <button type="button" className="small" onClick={() => download(`run-${result.run_id}.json`, result)}>Download the whole result</button>
    </>
  );
}

function Current({ run }: { run: CurrentRun }) {
  const top = useRef<HTMLDivElement>(null);
  // A new run, or one opened from the list: bring its results into view.
  useEffect(() => {
    top.current?.scrollIntoView({ block: "start" });
  }, [run.runId]);
  const running = run.runId !== null && !FINISHED.has(run.status);
  const series: Record<string, number[]> = {};
  for (const update of run.epochs) {
    for (const [metric, value] of Object.entries(update.metrics)) (series[metric] ||= []).push(value);
  }
  const epochs = run.epochs.length ? run.epochs[run.epochs.length - 1].epochs : 0;
  const fit = run.plan?.steps.find((s) => s.kind === "fit") as { epochs?: number } | undefined;
  return (
    <div className="run-result" data-testid="run-result" aria-live="polite" ref={top}>
      <p className="run-id" data-run-id={run.runId || undefined}>
        {run.runId ? <>Run <code>{run.runId}</code> </> : "Run "}
        <strong className={`status status-${run.status}`}>{run.status}</strong>
        {running && <button type="button" className="small" onClick={() => useEditor.getState().cancelRun()}>Cancel</button>}
      </p>
      {run.progress && running && <p className="run-progress" data-testid="run-progress">{run.progress}</p>}
      {run.refusal && <ErrorBlock error={run.refusal} />}
      {(fit || run.epochs.length > 0) && (
        <>
          <ol className="run-epochs" data-testid="run-epochs">
            {run.epochs.map((u, i) => (
              <li key={i}>
                <progress max={u.epochs} value={u.epoch} /> epoch {u.epoch}/{u.epochs}: {Object.entries(u.metrics).map(([k, v]) => `${k} ${fmt(v)}`).join(" · ")}
              </li>
            ))}
          </ol>
          <Suspense fallback={<p className="muted">Loading the chart…</p>}>
            <Curves series={series} epochs={epochs || fit?.epochs || 1} />
          </Suspense>
        </>
      )}
      {run.result && <Result run={run} result={run.result} />}
    </div>
  );
}

function FitSettings() {
  const fit = useEditor((s) => s.fit);
  const data = useEditor((s) => s.fitData);
  const ends = useEditor((s) => s.nodes.filter((n) => n.data.card === "input" || n.data.card === "output").map((n) => `${n.data.card}:${n.id}`).join(","));
  const store = useEditor.getState;
  const boxes = ends ? ends.split(",").map((x) => {
    const [card, id] = x.split(":");
    return { role: card === "input" ? "inputs" : "targets", id, label: `${card === "input" ? "Input" : "Target"} data for ${id}` };
  }) : [];
  const number = (name: keyof typeof fit, label: string) => (
    <label>{label} <input name={name} value={fit[name]} onChange={(e) => store().setFit({ [name]: e.target.value })} /></label>
  );
  return (
    <div className="fit-options">
      {boxes.length === 0 && <p className="muted">Add Input and Output cards to fit.</p>}
      {boxes.map(({ role, id, label }) => {
        const key = `${role}:${id}`;
        const source = data[key] || { text: "", npy: null, note: "" };
        return (
          <div className="field" key={key}>
            <span className="data-label">{label}</span>
            <textarea rows={3} placeholder="CSV: one sample per line" spellCheck={false} data-testid={`fit-${role}-${id}`} value={source.text}
              onChange={(e) => store().setFitData(key, { text: e.target.value, npy: null, note: "" })} />
            <input type="file" accept=".npy,.csv,.txt" aria-label={`${label}: .npy or .csv file`} onChange={async (e) => {
              const file = e.target.files?.[0];
              if (!file) return;
              try {
                if (file.name.endsWith(".npy")) {
                  const npy = parseNpy(await file.arrayBuffer(), file.name);
                  store().setFitData(key, { text: "", npy, note: `Using ${file.name}: ${npy.dtype} (${npy.shape.join(", ")})` });
                } else {
                  store().setFitData(key, { text: await file.text(), npy: null, note: "" });
                }
              } catch (error) {
                store().setFitData(key, { ...source, note: (error as Error).message });
              }
            }} />
            {source.note && <small className="muted">{source.note}</small>}
          </div>
        );
      })}
      <div className="fit-settings">
        {number("epochs", "Epochs")}
        {number("batch_size", "Batch size")}
        <label>Optimizer <select name="optimizer" value={fit.optimizer} onChange={(e) => store().setFit({ optimizer: e.target.value })}>
          {["adam", "sgd", "rmsprop"].map((o) => <option key={o}>{o}</option>)}
        </select></label>
        {number("learning_rate", "Learning rate")}
        <label>Loss <select name="loss" value={fit.loss} onChange={(e) => store().setFit({ loss: e.target.value })}>
          {["mse", "mae", "binary_crossentropy", "categorical_crossentropy"].map((o) => <option key={o}>{o}</option>)}
        </select></label>
        {number("metrics", "Metrics")}
      </div>
    </div>
  );
}

function InspectChoices() {
  const mode = useEditor((s) => s.runMode);
  const inspect = useEditor((s) => s.inspect);
  const setInspect = useEditor.getState().setInspect;
  return (
    <fieldset className="run-inspect">
      <legend>Card statistics</legend>
      <label><input type="checkbox" data-testid="inspect-after" checked={inspect.after} onChange={(e) => setInspect({ after: e.target.checked })} />
        {" "}Inspect every card at the end (a histogram badge on each card; per-channel plots of the selected one)</label>
      {inspect.after && (
        <label className="indent">on {mode === "fit" ? "the first batch" : "the random batch"} in{" "}
          <select data-testid="inspect-mode" value={inspect.training ? "training" : "inference"} onChange={(e) => setInspect({ training: e.target.value === "training" })}>
            <option value="inference">inference mode (moving statistics)</option>
            <option value="training">training mode (the batch's statistics)</option>
          </select>
          {inspect.training && <small className="muted"> A training pass updates the moving statistics once more.</small>}
        </label>
      )}
      {mode === "fit" && (
        <label><input type="checkbox" data-testid="inspect-during" checked={inspect.during} onChange={(e) => setInspect({ during: e.target.checked })} />
          {" "}During the fit too, live, every{" "}
          <input name="inspect_every" className="narrow" value={inspect.every} disabled={!inspect.during} onChange={(e) => setInspect({ every: e.target.value })} />
          {" "}epochs (inference mode, first batch)</label>
      )}
    </fieldset>
  );
}

function RunsList() {
  const runs = useEditor((s) => s.runs);
  const total = useEditor((s) => s.runsTotal);
  const open = useEditor((s) => s.current?.runId);
  useEffect(() => {
    void useEditor.getState().refreshRuns();
  }, []);
  return (
    <details className="runs" data-testid="runs" open>
      <summary>Past runs ({total}) <button type="button" className="small" onClick={(e) => { e.preventDefault(); void useEditor.getState().refreshRuns(); }}>Refresh</button></summary>
      {runs.length === 0 ? <p className="muted">No runs yet.</p> : (
        <ul>
          {runs.map((r) => (
            <li key={r.run_id}>
              <button type="button" className={`link${r.run_id === open ? " current" : ""}`} data-testid={`run-item-${r.run_id}`}
                onClick={() => useEditor.getState().openRun(r.run_id)}>
                <span className={`status status-${r.status}`}>{r.status}</span> {new Date(r.created_at).toLocaleString()} <code>{r.run_id.slice(0, 8)}</code>
              </button>
            </li>
          ))}
        </ul>
      )}
    </details>
  );
}

export function RunPanel() {
  const mode = useEditor((s) => s.runMode);
  const current = useEditor((s) => s.current);
  const setMode = useEditor.getState().setRunMode;
  return (
    <section className="run-panel" aria-label="Run">
      <h2>Run</h2>
      <fieldset className="run-modes">
        <legend>Data</legend>
        <label><input type="radio" name="run-mode" data-testid="run-mode-random" checked={mode === "random"} onChange={() => setMode("random")} /> Random batch of 8 (seed 0): a training call, then an inference call</label>
        <label><input type="radio" name="run-mode" data-testid="run-mode-fit" checked={mode === "fit"} onChange={() => setMode("fit")} /> Fit on my data (CSV or .npy), then predict</label>
      </fieldset>
      <InspectChoices />
      {mode === "fit" && (
        <details className="fit-box" open>
          <summary>Data and training settings</summary>
          <FitSettings />
        </details>
      )}
      {current ? <Current run={current} /> : <div className="run-result" data-testid="run-result"><p className="muted">No result: press Run.</p></div>}
      <RunsList />
    </section>
  );
}
