// "Arrange": a layered left-to-right layout of the graph by ELK (elkjs), loaded on first use so
// that it does not weigh on the editor's start. A chain too long for the view at a readable
// zoom is wrapped into rows.

import type { ElkNode } from "elkjs/lib/elk-api";
import type { CardNode, Wire } from "./store";

const FALLBACK = { width: 180, height: 90 };
/** Below this zoom a card's text is hard to read: wrap the layout rather than shrink it further. */
const READABLE_ZOOM = 0.75;

type Positions = Record<string, { x: number; y: number }>;

export async function arrange(nodes: CardNode[], edges: Wire[], view: { width: number; height: number }): Promise<Positions> {
  const { default: ELK } = await import("elkjs/lib/elk.bundled.js");
  const elk = new ELK();
  const layout = (wrap: boolean): Promise<ElkNode> => elk.layout({
    id: "graph",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "RIGHT",
      // Room between the layers for the shape labels on the wires.
      "elk.layered.spacing.nodeNodeBetweenLayers": "120",
      "elk.spacing.nodeNode": wrap ? "70" : "40",
      "elk.layered.considerModelOrder.strategy": "NODES_AND_EDGES",
      "elk.layered.nodePlacement.strategy": "BRANDES_KOEPF",
      ...(wrap ? { "elk.layered.wrapping.strategy": "MULTI_EDGE", "elk.aspectRatio": String(view.width / view.height) } : {}),
    },
    children: nodes.map((n) => ({ id: n.id, width: n.measured?.width ?? FALLBACK.width, height: n.measured?.height ?? FALLBACK.height })),
    edges: edges.map((e) => ({ id: e.id, sources: [e.source], targets: [e.target] })),
  });
  let laid = await layout(false);
  if ((laid.width || 0) * READABLE_ZOOM > view.width || (laid.height || 0) * READABLE_ZOOM > view.height) laid = await layout(true);
  const positions: Positions = {};
  for (const child of laid.children || []) positions[child.id] = { x: Math.round(child.x || 0), y: Math.round(child.y || 0) };
  return positions;
}
