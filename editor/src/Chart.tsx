// Curves of a fit, one series per metric, drawn by uPlot.

import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

const COLORS = ["#4f86c6", "#d1495b", "#2a9d8f", "#e9a03b", "#7b5ea7", "#6c757d"];

export function Curves({ series, epochs }: { series: Record<string, number[]>; epochs: number }) {
  const box = useRef<HTMLDivElement>(null);
  const names = Object.keys(series);
  const key = names.join("|");
  const points = Math.max(0, ...names.map((n) => series[n].length));

  useEffect(() => {
    if (!box.current || !names.length) return;
    const width = Math.max(240, box.current.clientWidth || 300);
    const plot = new uPlot(
      {
        width,
        height: 170,
        scales: { x: { time: false, range: [1, Math.max(2, epochs)] } },
        axes: [{ label: "epoch", size: 34 }, { size: 52 }],
        legend: { show: true, live: false },
        series: [{ label: "epoch" }, ...names.map((name, i) => ({ label: name, stroke: COLORS[i % COLORS.length], width: 2, points: { show: true, size: 5 } }))],
      },
      [[], ...names.map(() => [])],
      box.current,
    );
    (box.current as any).plot = plot;
    return () => plot.destroy();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, epochs]);

  useEffect(() => {
    const plot: uPlot | undefined = (box.current as any)?.plot;
    if (!plot) return;
    const xs = Array.from({ length: points }, (_, i) => i + 1);
    plot.setData([xs, ...names.map((n) => xs.map((_, i) => series[n][i] ?? null))] as uPlot.AlignedData);
  });

  const last = names.map((n) => `${n} ${Number(series[n][series[n].length - 1]?.toPrecision(4))}`).join(" · ");
  return (
    <figure className="curves" data-testid="loss-curve" data-points={points} data-metrics={key}>
      <div ref={box} />
      <figcaption>{points ? `After epoch ${points}: ${last}` : "Waiting for the first epoch…"}</figcaption>
    </figure>
  );
}
