// A wire: a bezier in the colour of its type, with the inferred shape of the tensor it carries as
// its label. Labels live in React Flow's edge-label layer, which is drawn under the nodes, so a
// label never covers a card's text.

import { BaseEdge, EdgeLabelRenderer, getBezierPath, type EdgeProps } from "@xyflow/react";
import { memo } from "react";
import { useEditor, type Wire } from "./store";

/** A shape as Python prints it: [null, 6, 6, 8] → "(None, 6, 6, 8)"; several shapes joined. */
export function formatShape(shape: unknown): string {
  if (!Array.isArray(shape)) return "";
  if (shape.some(Array.isArray)) return shape.map(formatShape).join(" ");
  const dims = shape.map((d) => (d === null ? "None" : String(d)));
  return `(${dims.join(", ")}${dims.length === 1 ? "," : ""})`;
}

function WireEdgeView(props: EdgeProps<Wire>) {
  const { source, target, sourceHandleId, targetHandleId, selected } = props;
  const [path, labelX, labelY] = getBezierPath(props);
  const shape = useEditor((s) => s.validation.shapes[source]?.[sourceHandleId || ""]);
  const color = useEditor((s) => {
    const card = s.card(source);
    const type = card?.outputs.find((p) => p.id === sourceHandleId)?.type;
    return (type && s.catalog.types.get(type)?.color) || "#888";
  });
  const label = formatShape(shape);
  const name = `${source}-${sourceHandleId}-${target}-${targetHandleId}`;
  return (
    <g data-testid={`edge-${name}`} className="wire">
      <title>{`${source}.${sourceHandleId} → ${target}.${targetHandleId}${label ? ` ${label}` : ""}`}</title>
      <BaseEdge path={path} interactionWidth={14} style={{ stroke: color, strokeWidth: selected ? 3.5 : 2 }} />
      {label && (
        <EdgeLabelRenderer>
          <div
            className={`edge-label${selected ? " selected" : ""}`}
            data-testid={`edge-label-${name}`}
            style={{ transform: `translate(-50%, -50%) translate(${labelX}px, ${labelY}px)` }}
          >
            {label}
          </div>
        </EdgeLabelRenderer>
      )}
    </g>
  );
}

export const WireEdge = memo(WireEdgeView);
