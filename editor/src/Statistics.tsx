// Card statistics from the run on show: the badge on a card (its output's histogram) and the
// selected card's panel (per output: the per-channel plot, zeros and non-finite values, the
// histogram). A card whose statistics include the tensor entering it (batch normalization does,
// the engine decides which) also gets the before/after view: both distributions on one axis,
// the output's channel means against β, and the batch's statistics against the moving ones.
// It follows a fit live: every `inspect` event adds a pass and the latest one is shown.

import { useState } from "react";
import type { InspectionPass } from "./run";
import { Bars, ChannelPlot, fmt, summary } from "./Sketches";
import { useEditor, type EditorState } from "./store";
import { TENSOR_TYPE, type Card, type NodeInspection, type TensorStatistics } from "./types";

/** A training pass centres each channel on β up to rounding; a wider gap is a real one. */
export const MEAN_TOLERANCE = 1e-3;
/** Channels listed in the tables (the plots show them all). */
const ROWS = 16;
/** Passes offered to choose from: the latest ones (a long fit inspected often makes thousands). */
const LISTED = 50;
const NO_PASSES: InspectionPass[] = [];

/** The latest pass of card statistics of the run on show (null: none). */
function latestPass(state: EditorState): InspectionPass | null {
  const passes = state.current?.inspections || [];
  return passes.length ? passes[passes.length - 1] : null;
}

function passName(pass: InspectionPass): string {
  const when = pass.epoch !== null ? `after epoch ${pass.epoch}` : `step ${pass.step + 1}`;
  return `${when}, ${pass.training ? "training mode (this batch's statistics)" : "inference mode (moving statistics)"}`;
}

const percent = (x: number) => `${fmt(100 * x)}%`;
const average = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / (xs.length || 1);
const shapeText = (t: TensorStatistics) => `(${t.shape.join(", ")})`;

export function StatisticsBadge({ nodeId }: { nodeId: string }) {
  const facts = useEditor((s) => latestPass(s)?.nodes[nodeId]);
  const port = facts && Object.keys(facts.outputs)[0];
  if (!facts || !port) return null;
  const tensor = facts.outputs[port];
  const { mean, std, lo, hi } = summary(tensor);
  const text = `${port} ${shapeText(tensor)}: mean ${fmt(mean)} · std ${fmt(std)} · ${fmt(lo)} … ${fmt(hi)}. Select the card for its per-channel plot.`;
  return (
    <span className="badge stats-badge" data-testid={`stats-badge-${nodeId}`} title={text}>
      <Bars counts={tensor.histogram.counts} width={40} height={11} label={text} />
    </span>
  );
}

/** Fractions of zeros and of non-finite values, said only when there are some. */
function Oddities({ tensor }: { tensor: TensorStatistics }) {
  const zeros = tensor.channels.zeros, nonfinite = tensor.channels.nonfinite;
  const line = (name: string, fractions: number[], className: string) => {
    if (!fractions.some((f) => f > 0)) return null;
    const worst = fractions.indexOf(Math.max(...fractions));
    return <p className={className}>{name}: {percent(average(fractions))} of the values (channel {worst}: {percent(fractions[worst])})</p>;
  };
  return <>{line("Zeros", zeros, "muted")}{line("Not finite", nonfinite, "field-error")}</>;
}

function TensorView({ nodeId, port, tensor }: { nodeId: string; port: string; tensor: TensorStatistics }) {
  const { mean, std, lo, hi } = summary(tensor);
  return (
    <div className="tensor-statistics">
      <h4>{port} <span className="muted">{shapeText(tensor)}{tensor.axis !== null ? `, channels along axis ${tensor.axis}` : ", one channel"}</span></h4>
      <ChannelPlot channels={tensor.channels} testid={`channel-plot-${nodeId}-${port}`} />
      <Oddities tensor={tensor} />
      <div className="distribution">
        <Bars counts={tensor.histogram.counts} width={160} height={28} label={`histogram of ${port}, ${fmt(lo)} … ${fmt(hi)}`} />
        <span className="muted">mean {fmt(mean)} · std {fmt(std)}<br />{fmt(lo)} … {fmt(hi)}</span>
      </div>
    </div>
  );
}

/** Input and output histograms over one shared range, so the narrowing and centring shows. */
function Distributions({ input, output }: { input: TensorStatistics; output: TensorStatistics }) {
  const edges = [...input.histogram.edges, ...output.histogram.edges];
  const range: [number, number] = [Math.min(...edges), Math.max(...edges)];
  const row = (name: string, tensor: TensorStatistics) => {
    const { mean, std } = summary(tensor);
    return (
      <div className="distribution">
        <span className="dist-name">{name}</span>
        <Bars counts={tensor.histogram.counts} edges={tensor.histogram.edges} range={range} width={200} height={30}
          label={`${name} histogram: mean ${fmt(mean)}, std ${fmt(std)}`} testid={`histogram-${name}`} />
        <span className="muted">mean {fmt(mean)}<br />std {fmt(std)}</span>
      </div>
    );
  };
  return (
    <>
      {row("input", input)}
      {row("output", output)}
      <div className="dist-axis"><span>{fmt(range[0])}</span><span>{fmt(range[1])}</span></div>
    </>
  );
}

function MeanVsBeta({ facts, output, training }: { facts: NodeInspection; output: TensorStatistics; training: boolean }) {
  const means = output.channels.mean.map(Number);
  const beta = facts.beta ? facts.beta.map(Number) : means.map(() => 0); // without `center` the offset is 0
  if (beta.length !== means.length) return <p className="muted">β has {beta.length} values for {means.length} channels: not compared per channel.</p>;
  const within = means.map((m, c) => Math.abs(m - beta[c]) <= MEAN_TOLERANCE);
  return (
    <>
      <h4>Output mean per channel against β{facts.beta ? "" : " (no β: center is off, so 0)"}</h4>
      {training ? (
        <p className="muted" data-testid="mean-vs-beta-verdict" data-within={String(within.every(Boolean))}>
          This batch's own mean is subtracted, so each channel's output mean is β within ±<span data-testid="mean-vs-beta-tolerance">{MEAN_TOLERANCE}</span>:
          {" "}{within.filter(Boolean).length} of {means.length} channels are.
        </p>
      ) : (
        <p className="muted">Inference mode subtracts the moving mean: the output means reach β only as the moving mean catches up with the data's (batch against moving statistics below).</p>
      )}
      <table className="weights" data-testid="mean-vs-beta">
        <thead><tr><th>channel</th><th>output mean</th><th>β</th><th>difference</th></tr></thead>
        <tbody>
          {means.slice(0, ROWS).map((m, c) => (
            <tr key={c} data-channel={c}>
              <td>{c}</td><td className="mean">{fmt(m)}</td><td className="beta">{fmt(beta[c])}</td>
              <td className="difference">{fmt(m - beta[c])}{training ? (within[c] ? " ✓" : " ✗") : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {means.length > ROWS && <p className="muted">…and {means.length - ROWS} more channels.</p>}
    </>
  );
}

function BatchVsMoving({ facts }: { facts: NodeInspection }) {
  const columns = (["batch_mean", "moving_mean", "batch_variance", "moving_variance"] as const).filter((k) => facts[k]);
  if (!columns.length) return null;
  const count = Math.max(...columns.map((k) => facts[k]!.length));
  return (
    <>
      <h4>This batch's statistics against the moving ones</h4>
      <table className="weights" data-testid="batch-vs-moving">
        <thead><tr><th>channel</th>{columns.map((k) => <th key={k}>{k.replace("_", " ")}</th>)}</tr></thead>
        <tbody>
          {Array.from({ length: Math.min(ROWS, count) }, (_, c) => (
            <tr key={c}><td>{c}</td>{columns.map((k) => <td key={k} className={k}>{fmt(Number(facts[k]![c]))}</td>)}</tr>
          ))}
        </tbody>
      </table>
      {count > ROWS && <p className="muted">…and {count - ROWS} more.</p>}
    </>
  );
}

function BeforeAfter({ facts, pass }: { facts: NodeInspection; pass: InspectionPass }) {
  const output = Object.values(facts.outputs)[0];
  if (!facts.input || !output) return null;
  return (
    <section className="before-after" data-testid="before-after">
      <h3>Before and after</h3>
      <Distributions input={facts.input} output={output} />
      <MeanVsBeta facts={facts} output={output} training={pass.training} />
      <BatchVsMoving facts={facts} />
    </section>
  );
}

/** Whether the card outputs a tensor: the engine inspects those outputs alone, so a card whose
 * outputs are objects (an initializer, a regularizer, a constraint, a layer object) has no statistics. */
export const makesTensors = (card: Card) => card.outputs.some((port) => port.type === TENSOR_TYPE);

export function CardStatistics({ nodeId }: { nodeId: string }) {
  const passes = useEditor((s) => s.current?.inspections) || NO_PASSES;
  const [chosen, setChosen] = useState<number | null>(null); // null: the latest, following a fit live
  if (!passes.length) {
    return <p className="muted statistics-hint" data-testid="statistics-hint">Statistics of this card: tick "Card statistics" in the Run panel, then Run.</p>;
  }
  const index = chosen !== null && chosen < passes.length ? chosen : passes.length - 1;
  const pass = passes[index];
  const facts = pass.nodes[nodeId];
  return (
    <details className="card-statistics" data-testid="card-statistics" open>
      <summary>Statistics</summary>
      <label className="pass-choice">Pass{" "}
        <select data-testid="statistics-pass" value={chosen === null ? "latest" : String(index)}
          onChange={(e) => setChosen(e.target.value === "latest" ? null : Number(e.target.value))}>
          <option value="latest">latest ({passName(passes[passes.length - 1])})</option>
          {passes.map((p, i) => (i >= passes.length - LISTED || i === index) && <option key={i} value={i}>{passName(p)}</option>)}
        </select>
      </label>
      {facts ? (
        <>
          {Object.entries(facts.outputs).map(([port, tensor]) => <TensorView key={port} nodeId={nodeId} port={port} tensor={tensor} />)}
          <BeforeAfter facts={facts} pass={pass} />
        </>
      ) : <p className="muted">This card made no tensor in this pass.</p>}
    </details>
  );
}
