// A card on the canvas, compact: title, id, its sockets and only the parameters that differ from
// their defaults. The ▸ button expands it in place (every socket and every parameter); the full
// form is in the inspector. Errors mark the node and the port, with their sentence on hover.
// After a run that inspected the cards, a badge shows the histogram of the card's output.

import { Handle, Position, useUpdateNodeInternals, type NodeProps } from "@xyflow/react";
import { memo, useEffect, type KeyboardEvent } from "react";
import { useShallow } from "zustand/react/shallow";
import { shortText, describe } from "./schema";
import { StatisticsBadge } from "./Statistics";
import { useEditor, type CardNode as CardNodeType } from "./store";
import type { Port, Problem } from "./types";

const EMPTY: Problem[] = [];
const LAYER_TYPE = "NeuralNetworkLayer";

function portTitle(port: Port, problems: Problem[]): string {
  const lines = [`${port.text} (${port.type})${port.required ? ", required" : ""}`, port.help, ...problems.map((p) => `⚠ ${p.message}`)];
  return lines.filter(Boolean).join("\n");
}

function PortHandle({ nodeId, port, side, color, problems }: {
  nodeId: string; port: Port; side: "in" | "out"; color: string; problems: Problem[];
}) {
  const picked = useEditor((s) => s.picked);
  const isPicked = picked && picked.node === nodeId && picked.port === port.id && side === "out";
  const onKey = (event: KeyboardEvent) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    event.preventDefault();
    event.stopPropagation();
    const store = useEditor.getState();
    if (side === "out") {
      store.pick(nodeId, port.id);
      store.notify(`Picked ${nodeId}.${port.id}: now focus an input socket and press Enter to wire it.`);
    } else if (store.picked) {
      store.connect(store.picked.node, store.picked.port, nodeId, port.id);
      store.pick(nodeId, null);
    } else {
      store.notify("Press Enter on an output socket first, then on this input.");
    }
  };
  return (
    <Handle
      type={side === "in" ? "target" : "source"}
      position={side === "in" ? Position.Left : Position.Right}
      id={port.id}
      data-testid={`port-${nodeId}-${side}-${port.id}`}
      className={`socket${isPicked ? " picked" : ""}${problems.length ? " socket-error" : ""}`}
      style={{ background: color }}
      tabIndex={0}
      role="button"
      aria-label={`${side === "in" ? "Input" : "Output"} ${port.text} of ${nodeId} (${port.type}): press Enter to wire`}
      title={portTitle(port, problems)}
      onKeyDown={onKey}
    />
  );
}

function CardNodeView({ id, data, selected }: NodeProps<CardNodeType>) {
  const card = useEditor((s) => s.catalog.cards.get(data.card));
  const types = useEditor((s) => s.catalog.types);
  const problems = useEditor(useShallow((s) => s.validation.errors.filter((e) => e.node === id)));
  const drafts = useEditor((s) => s.drafts[id]);
  const wiredKey = useEditor((s) => s.edges.filter((e) => e.target === id).map((e) => e.targetHandle).sort().join(","));
  const feedingKey = useEditor((s) => [...new Set(s.edges.filter((e) => e.source === id).map((e) => e.sourceHandle))].sort().join(","));
  const feeds = feedingKey !== "";
  const updateInternals = useUpdateNodeInternals();
  const expanded = Boolean(data.expanded);

  const wired = new Set(wiredKey ? wiredKey.split(",") : []);
  const inputs = card ? card.inputs.filter((p) => p.socket && (expanded || !p.literal || wired.has(p.id))) : [];
  // Compact: a layer card's "Layer instance" output (for wrappers and weight sharing) only when
  // it is wired, unless the card has nothing else to offer.
  const feeding = new Set(feedingKey ? feedingKey.split(",") : []);
  const tensorsOut = card ? card.outputs.filter((p) => expanded || p.type !== LAYER_TYPE || feeding.has(p.id)) : [];
  const outputs = card ? (tensorsOut.length ? tensorsOut : card.outputs) : [];
  const shownKey = [...inputs, ...outputs].map((p) => p.id).join(",");
  useEffect(() => {
    updateInternals(id);
  }, [id, shownKey, expanded, updateInternals]);

  if (!card) {
    return (
      <div className="card-node has-error" data-testid={`node-${id}`}>
        <div className="node-header"><span className="node-title">Unknown card {data.card}</span><span className="node-id">{id}</span></div>
        <p className="node-problem">This server has no card "{data.card}".</p>
      </div>
    );
  }

  const root = card.params_schema;
  const portProblems = (portId: string) => problems.filter((p) => p.port === portId);
  const draftErrors = Object.entries(drafts || {}).filter(([, d]) => d.error);
  const literal = card.inputs.filter((p) => p.literal && !wired.has(p.id));
  const paramRows = literal.filter((p) => expanded || p.id in data.params || (drafts && drafts[p.id]?.error) || portProblems(p.id).length
    || (p.required && !(p.id in data.params)));
  const rows = Math.max(inputs.length, outputs.length);
  const color = (type: string) => types.get(type)?.color || "#888";
  const nodeErrors = problems.length + draftErrors.length;
  const sentences = [...draftErrors.map(([port, d]) => `${port}: ${d.error} (not applied)`), ...problems.map((p) => `${p.port ? `${p.port}: ` : ""}${p.message}`)];
  const unused = card.outputs.length > 0 && !feeds;

  return (
    <div
      className={`card-node${selected ? " selected" : ""}${nodeErrors ? " has-error" : ""}${unused ? " unused" : ""}`}
      data-testid={`node-${id}`}
      data-card={card.id}
    >
      <div className="node-header" title={card.help.split("\n")[0]}>
        <span className="node-title">{card.title}</span>
        <button
          type="button"
          className="node-expand nodrag"
          aria-expanded={expanded}
          aria-label={expanded ? "Show less" : "Show every socket and parameter"}
          title={expanded ? "Show less" : "Show every socket and parameter"}
          onClick={(event) => {
            event.stopPropagation();
            useEditor.getState().toggleExpanded(id);
          }}
        >
          {expanded ? "▾" : "▸"}
        </button>
      </div>
      <div className="node-sub">
        <span className="node-id">{id}</span>
        <StatisticsBadge nodeId={id} />
        {unused && <span className="badge unused-badge" title="Its outputs feed nothing: it does not take part in the model.">unused</span>}
        {nodeErrors > 0 && (
          <span className="badge error-badge" title={sentences.join("\n")} data-testid={`node-problems-${id}`}>
            {nodeErrors} problem{nodeErrors > 1 ? "s" : ""}
          </span>
        )}
      </div>
      {Array.from({ length: rows }, (_, i) => {
        const input = inputs[i];
        const output = outputs[i];
        const inProblems = input ? portProblems(input.id) : EMPTY;
        return (
          <div className={`row port-row${inProblems.length ? " port-error" : ""}`} key={i} data-port={input?.id}>
            {input && (
              <>
                <PortHandle nodeId={id} port={input} side="in" color={color(input.type)} problems={inProblems} />
                <span className={`port-label in${input.required ? " required" : ""}`} title={portTitle(input, inProblems)}>{input.text}</span>
              </>
            )}
            {output && (
              <>
                <span className="port-label out" title={portTitle(output, EMPTY)}>{output.text}</span>
                <PortHandle nodeId={id} port={output} side="out" color={color(output.type)} problems={EMPTY} />
              </>
            )}
          </div>
        );
      })}
      {paramRows.length > 0 && (
        <div className="node-params">
          {paramRows.map((port) => {
            const draft = drafts?.[port.id];
            const errs = portProblems(port.id);
            const set = port.id in data.params;
            const fallback = port.default ?? (root.properties?.[port.id] ? describe(root.properties[port.id], root).default : undefined);
            const bad = Boolean(draft?.error) || errs.length > 0;
            const missing = port.required && !set;
            return (
              <div
                key={port.id}
                className={`row param-row${bad ? " port-error" : ""}${set ? "" : " default"}`}
                data-port={port.id}
                title={[port.help, draft?.error && `⚠ ${draft.error} (not applied)`, ...errs.map((e) => `⚠ ${e.message}`)].filter(Boolean).join("\n")}
              >
                <span className="param-name">{port.text}</span>
                <span className="param-value">
                  {missing ? "required" : shortText(set ? data.params[port.id] : fallback)}
                  {draft?.error && <em className="draft"> ({draft.shown || draft.text.trim() || "empty"} not applied)</em>}
                </span>
              </div>
            );
          })}
        </div>
      )}
    </div>
  );
}

export const CardNode = memo(CardNodeView);
