// The full form of the selected node, generated from its card's `params_schema`.
//
// The form never lies: a text box commits its value only when its whole text is valid, on Enter
// or when it loses focus. Until then the text is a draft kept in the store; a draft that cannot
// be used marks the node, is listed with the problems and turns Run off. Escape drops the draft.

import { useEffect, useState } from "react";
import { useShallow } from "zustand/react/shallow";
import { boundsText, checkText, describe, formatText, sameValue, type Field } from "./schema";
import { useEditor, type CardNode } from "./store";
import type { Card, Port } from "./types";

function ParamField({ node, port, field }: { node: CardNode; port: Port; field: Field }) {
  const value = node.data.params[port.id];
  const set = port.id in node.data.params;
  const fallback = port.default ?? field.default;
  const draft = useEditor((s) => s.drafts[node.id]?.[port.id]);
  const wire = useEditor((s) => s.edges.find((e) => e.target === node.id && e.targetHandle === port.id));
  const committedText = formatText(field, set ? value : undefined);
  const [text, setText] = useState(draft ? draft.text : committedText);
  const testid = `param-${port.id}`;
  const store = useEditor.getState;

  // Undo, redo or a rename changed the committed value: show it (unless a draft is pending).
  useEffect(() => {
    if (!draft) setText(committedText);
  }, [committedText, draft]);

  const commitValue = (next: unknown) => {
    const stored = sameValue(next, fallback) ? undefined : next;
    if (!sameValue(stored, set ? value : undefined)) store().setParam(node.id, port.id, stored);
    else store().setDraft(node.id, port.id, null);
  };

  const type = (next: string) => {
    setText(next);
    if (next === committedText) {
      store().setDraft(node.id, port.id, null);
      return;
    }
    const checked = checkText(field, next, port.text, port.required, fallback);
    store().setDraft(node.id, port.id, { text: next, error: checked.ok ? null : checked.error });
  };

  const commit = () => {
    const current = store().drafts[node.id]?.[port.id];
    if (!current) return;
    const checked = checkText(field, current.text, port.text, port.required, fallback);
    if (checked.ok) commitValue(checked.value);
  };

  const revert = () => {
    store().setDraft(node.id, port.id, null);
    setText(committedText);
  };

  const error = draft?.error || null;
  let control;
  if (field.kind === "boolean" && !field.nullable) {
    control = (
      <input type="checkbox" data-testid={testid} disabled={Boolean(wire)} checked={Boolean(set ? value : fallback)}
        onChange={(e) => commitValue(e.target.checked)} />
    );
  } else if (field.kind === "enum" || field.kind === "boolean") {
    const choices: unknown[] = field.kind === "enum" ? [...field.enum!] : [true, false];
    if (field.nullable) choices.push(null);
    const shown = set ? value : fallback ?? null;
    control = (
      <select data-testid={testid} disabled={Boolean(wire)} value={JSON.stringify(shown)} onChange={(e) => commitValue(JSON.parse(e.target.value))}>
        {choices.map((c) => (
          <option key={JSON.stringify(c)} value={JSON.stringify(c)}>{c === null ? "none" : String(c)}</option>
        ))}
      </select>
    );
  } else {
    const multiline = field.kind === "json" || field.kind === "object";
    const props = {
      "data-testid": testid,
      value: text,
      disabled: Boolean(wire),
      spellCheck: false,
      "aria-invalid": error ? true : false,
      placeholder: fallback !== undefined && fallback !== null ? formatText(field, fallback) : field.nullable ? "none" : "",
      onBlur: commit,
      onKeyDown: (e: React.KeyboardEvent) => {
        if (e.key === "Enter" && !(multiline && e.shiftKey)) {
          e.preventDefault();
          commit();
        } else if (e.key === "Escape") {
          revert();
        }
      },
    };
    control = multiline
      ? <textarea rows={2} {...props} onChange={(e) => type(e.target.value)} />
      : <input type="text" inputMode={field.kind === "number" || field.kind === "integer" ? "decimal" : undefined} {...props} onChange={(e) => type(e.target.value)} />;
  }

  const bounds = boundsText(field);
  return (
    <div className={`field${wire ? " wired" : ""}${error ? " invalid" : ""}`} data-port={port.id}>
      <label className={`field-label${port.required ? " required" : ""}`}>
        <span>{port.text}</span>
        {control}
      </label>
      {wire && <small className="wired-note">Set by the wire from {wire.source}.{wire.sourceHandle}.</small>}
      {error && <p className="field-error" role="alert">{error} — not applied{draft && checkText(field, committedText, port.text, false, fallback).ok ? `; still ${committedText || "the default"}` : ""}.</p>}
      {!error && draft && <p className="field-pending">Press Enter or leave the field to apply.</p>}
      <small className="muted">{port.type}{bounds ? `, ${bounds}` : ""}{field.nullable ? ", may be empty" : ""}. {port.help}</small>
    </div>
  );
}

function IdField({ node }: { node: CardNode }) {
  const [text, setText] = useState(node.id);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setText(node.id);
  }, [node.id]);
  const apply = () => {
    const problem = useEditor.getState().rename(node.id, text.trim());
    setError(problem);
  };
  return (
    <div className={`field${error ? " invalid" : ""}`}>
      <label className="field-label">
        <span>Node id</span>
        <input type="text" data-testid="node-id" value={text} spellCheck={false} aria-invalid={Boolean(error)}
          onChange={(e) => setText(e.target.value)} onBlur={apply} onKeyDown={(e) => e.key === "Enter" && apply()} />
      </label>
      {error && <p className="field-error" role="alert">{error}</p>}
    </div>
  );
}

function NodeForm({ node, card }: { node: CardNode; card: Card }) {
  const root = card.params_schema;
  const literal = card.inputs.filter((p) => p.literal && root.properties?.[p.id]);
  const sockets = card.inputs.filter((p) => p.socket && !p.literal);
  return (
    <>
      <h2>{card.title}</h2>
      <p className="muted"><code>{card.id}</code>{card.keras ? <> · <code>{card.keras}</code></> : null}</p>
      <details className="card-help">
        <summary>About this card</summary>
        <p className="help-text">{card.help}</p>
      </details>
      <IdField node={node} />
      {literal.map((port) => (
        <ParamField key={`${node.id}/${port.id}`} node={node} port={port} field={describe(root.properties[port.id], root)} />
      ))}
      {sockets.length > 0 && (
        <p className="muted">Sockets: {sockets.map((p) => `${p.text} (${p.type}${p.required ? ", required" : ""})`).join(", ")}.</p>
      )}
      <button type="button" className="danger" data-testid="delete-node" onClick={() => useEditor.getState().remove([node.id], [])}>
        Delete node
      </button>
    </>
  );
}

export function Inspector() {
  const selected = useEditor(useShallow((s) => s.nodes.filter((n) => n.selected)));
  const node = selected.length === 1 ? selected[0] : null;
  const card = useEditor((s) => (node ? s.catalog.cards.get(node.data.card) : undefined));
  let body;
  if (selected.length > 1) body = <p className="muted">{selected.length} cards selected: Delete removes them, Ctrl+C copies them.</p>;
  else if (!node) body = <p className="muted">Select a card on the canvas to edit its settings.</p>;
  else if (!card) body = <p className="field-error">Node {node.id} uses the card "{node.data.card}", which this server does not have.</p>;
  else body = <NodeForm key={node.id} node={node} card={card} />;
  return (
    <section className="inspector" aria-label="Settings of the selected card">
      {body}
    </section>
  );
}
