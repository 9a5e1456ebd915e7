// The live loss curve of a fit: one polyline per metric, epochs on x, values on y.

import { svgEl as node } from "./dom.js";

const WIDTH = 300;
const HEIGHT = 140;
const MARGIN = { left: 44, right: 8, top: 10, bottom: 22 };
const COLORS = ["#e76f51", "#2a9d8f", "#4f86c6", "#6a4c93"];

/** Draws `series` ({metric: [value per epoch]}) into `svg` for a fit of `epochs` epochs. */
export function drawCurve(svg, series, epochs) {
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  const values = Object.values(series).flat().filter(Number.isFinite);
  if (!values.length) {
    svg.replaceChildren(node("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "muted" }, "waiting for the first epoch…"));
    return;
  }
  const low = Math.min(...values);
  const high = Math.max(...values);
  const span = high - low || Math.abs(high) || 1;
  const x = (epoch) => MARGIN.left + ((WIDTH - MARGIN.left - MARGIN.right) * (epoch - 1)) / Math.max(1, epochs - 1);
  const y = (value) => MARGIN.top + ((HEIGHT - MARGIN.top - MARGIN.bottom) * (high - value)) / span;
  const parts = [
    node("line", { x1: MARGIN.left, y1: MARGIN.top, x2: MARGIN.left, y2: HEIGHT - MARGIN.bottom, class: "axis" }),
    node("line", { x1: MARGIN.left, y1: HEIGHT - MARGIN.bottom, x2: WIDTH - MARGIN.right, y2: HEIGHT - MARGIN.bottom, class: "axis" }),
    node("text", { x: MARGIN.left - 4, y: MARGIN.top + 4, "text-anchor": "end" }, high.toPrecision(3)),
    node("text", { x: MARGIN.left - 4, y: HEIGHT - MARGIN.bottom, "text-anchor": "end" }, low.toPrecision(3)),
    node("text", { x: WIDTH - MARGIN.right, y: HEIGHT - 6, "text-anchor": "end" }, `epoch ${epochs}`),
    node("text", { x: MARGIN.left, y: HEIGHT - 6 }, "epoch 1"),
  ];
  Object.entries(series).forEach(([metric, points], index) => {
    const color = COLORS[index % COLORS.length];
    const coordinates = points.map((value, i) => `${x(i + 1)},${y(value)}`).join(" ");
    parts.push(node("polyline", { points: coordinates, fill: "none", stroke: color, "stroke-width": 2, "data-metric": metric }));
    parts.push(node("text", { x: WIDTH - MARGIN.right, y: MARGIN.top + 12 * (index + 1), "text-anchor": "end", fill: color }, `${metric} ${Number(points[points.length - 1].toPrecision(4))}`));
  });
  svg.replaceChildren(...parts);
}
