// Small SVG charts: histograms (a card's statistics badge, a weight's summary, the before/after
// view on one shared axis) and the per-channel plot of a tensor's statistics. Plain SVG rather
// than uPlot (which draws the fit's curves, Chart.tsx): dozens sit on the canvas at once, they
// need no axes or interaction, and their numbers stay in the page (titles, labels) for reading.

import type { ChannelStatistics, TensorStatistics } from "./types";

/** A number as shown everywhere in the editor: 4 significant digits, non-finite ones by name. */
export const fmt = (x: number) => (Number.isFinite(x) ? String(Number(x.toPrecision(4))) : String(x));

/** Statistics may carry non-finite numbers as strings ("NaN", "Infinity"). */
const numbers = (values: unknown[]) => values.map(Number);

/** A whole tensor's mean, standard deviation and finite range, from its per-channel statistics. */
export function summary(tensor: TensorStatistics): { mean: number; std: number; lo: number; hi: number } {
  const { channels } = tensor;
  // Channels hold equally many values: the tensor's moments are the channels' averaged.
  const means = numbers(channels.mean).filter(Number.isFinite);
  const squares = numbers(channels.std).map((s, c) => s * s + Number(channels.mean[c]) ** 2).filter(Number.isFinite);
  const average = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / (xs.length || 1);
  const mean = average(means);
  const finite = (xs: number[]) => xs.filter(Number.isFinite);
  return {
    mean,
    std: Math.sqrt(Math.max(0, average(squares) - mean * mean)),
    lo: Math.min(...finite(numbers(channels.min))),
    hi: Math.max(...finite(numbers(channels.max))),
  };
}

/**
 * Bars of a histogram. With `edges` and `range`, each bar stands over its bin on that range (two
 * histograms with the same range share an axis); otherwise the bins are spread evenly.
 */
export function Bars({ counts, edges, range, width, height, label, testid }: {
  counts: number[]; edges?: number[]; range?: [number, number]; width: number; height: number; label: string; testid?: string;
}) {
  const top = Math.max(1, ...counts);
  const span = range && range[1] > range[0] ? range[1] - range[0] : 1;
  const bin = (i: number): [number, number] => (range && edges
    ? [((edges[i] - range[0]) / span) * width, ((edges[i + 1] - range[0]) / span) * width]
    : [(i * width) / counts.length, ((i + 1) * width) / counts.length]);
  return (
    <svg className="histogram" viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img" aria-label={label}
      data-testid={testid} data-total={counts.reduce((a, b) => a + b, 0)}>
      <title>{label}</title>
      {counts.map((count, i) => {
        if (!count) return null;
        const [left, right] = bin(i);
        const tall = Math.max(1, (height * count) / top);
        return <rect key={i} x={left} y={height - tall} width={Math.max(0.6, (right - left) * 0.85)} height={tall} />;
      })}
    </svg>
  );
}

const PLOT = { width: 300, height: 96, pad: 6 };

/** Per channel: a line from min to max, a box over mean ± std and a tick at the mean. */
export function ChannelPlot({ channels, testid }: { channels: ChannelStatistics; testid: string }) {
  const mean = numbers(channels.mean), std = numbers(channels.std), min = numbers(channels.min), max = numbers(channels.max);
  const finite = [...min, ...max].filter(Number.isFinite);
  if (!finite.length) return <p className="muted">No finite values.</p>;
  const lo = Math.min(...finite), hi = Math.max(...finite);
  const { width, height, pad } = PLOT;
  const y = (v: number) => height - pad - ((Math.min(hi, Math.max(lo, v)) - lo) / (hi > lo ? hi - lo : 1)) * (height - 2 * pad);
  const step = width / mean.length;
  const box = Math.max(1, step * 0.6);
  return (
    <figure className="channel-plot" data-testid={testid} data-channels={mean.length}>
      <svg viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img"
        aria-label={`${mean.length} channels: mean ± std and min–max, values from ${fmt(lo)} to ${fmt(hi)}`}>
        {lo < 0 && hi > 0 && <line className="zero" x1={0} x2={width} y1={y(0)} y2={y(0)} />}
        {mean.map((m, c) => {
          const x = (c + 0.5) * step;
          return (
            <g key={c}>
              <title>{`channel ${c}: mean ${fmt(m)} · std ${fmt(std[c])} · min ${fmt(min[c])} · max ${fmt(max[c])}`}</title>
              <line className="range" x1={x} x2={x} y1={y(min[c])} y2={y(max[c])} />
              <rect className="spread" x={x - box / 2} width={box} y={y(m + std[c])} height={Math.max(1, y(m - std[c]) - y(m + std[c]))} />
              <line className="mean" x1={x - box / 2} x2={x + box / 2} y1={y(m)} y2={y(m)} />
            </g>
          );
        })}
      </svg>
      <figcaption>
        {mean.length} channel{mean.length === 1 ? "" : "s"} from left to right, values {fmt(lo)} … {fmt(hi)}: line min–max, box mean ± std
      </figcaption>
    </figure>
  );
}
