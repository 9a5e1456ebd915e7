// The full form of the selected node, generated from its card's `params_schema`.
//
// The form never lies: a text box commits its value only when its whole text is valid, on Enter
// or when it loses focus. Until then the text is a draft kept in the store; a draft that cannot
// be used marks the node, is listed with the problems and turns Run off. Escape drops the draft.

import { useEffect, useState, type ReactNode } from "react";
import { useShallow } from "zustand/react/shallow";
import { CardStatistics, makesTensors } from "./Statistics";
import { boundsText, checkText, describe, formatText, problem, sameValue, type Field } from "./schema";
import { useEditor, type CardNode, type Wire } from "./store";
import type { Card, Port } from "./types";

interface FieldProps {
  node: CardNode;
  port: Port;
  field: Field;
}

/** What every field needs: the committed value, its default, the pending draft, the wire, and the commit. */
function useParam({ node, port, field }: FieldProps) {
  const value = node.data.params[port.id];
  const set = port.id in node.data.params;
  const fallback = port.default ?? field.default;
  const draft = useEditor((s) => s.drafts[node.id]?.[port.id]);
  const wire = useEditor((s) => s.edges.find((e) => e.target === node.id && e.targetHandle === port.id));
  const store = useEditor.getState;
  /** Puts a whole, valid value into the graph (the default as no param at all). */
  const commitValue = (next: unknown) => {
    const stored = sameValue(next, fallback) ? undefined : next;
    if (!sameValue(stored, set ? value : undefined)) store().setParam(node.id, port.id, stored);
    else store().setDraft(node.id, port.id, null);
  };
  return { value, set, fallback, draft, wire, store, commitValue };
}

function FieldFrame({ port, field, wire, error, pending, children }: {
  port: Port; field: Field; wire: Wire | undefined; error: string | null; pending: boolean; children: ReactNode;
}) {
  const bounds = boundsText(field);
  return (
    <div className={`field${wire ? " wired" : ""}${error ? " invalid" : ""}`} data-port={port.id}>
      <label className={`field-label${port.required ? " required" : ""}`}>
        <span>{port.text}</span>
        {children}
      </label>
      {wire && <small className="wired-note">Set by the wire from {wire.source}.{wire.sourceHandle}.</small>}
      {error && <p className="field-error" role="alert">{error} — not applied.</p>}
      {!error && pending && <p className="field-pending">Press Enter or leave the field to apply.</p>}
      <small className="muted help" title={port.help}>{port.type}{bounds ? `, ${bounds}` : ""}{field.nullable ? ", may be empty" : ""}. {port.help}</small>
    </div>
  );
}

/** An Object param as a small sub-form: an on/off switch when it may be empty, one box per key. */
function ObjectField(props: FieldProps) {
  const { node, port, field } = props;
  const { value, set, fallback, draft, wire, store, commitValue } = useParam(props);
  const keys = Object.entries(field.properties!);
  const current = (set ? value : fallback) as Record<string, unknown> | null | undefined;
  const committed = JSON.stringify({
    on: current !== null && current !== undefined,
    texts: Object.fromEntries(keys.map(([k, f]) => [k, formatText(f, current?.[k])])),
  });
  const form: { on: boolean; texts: Record<string, string> } = JSON.parse(draft ? draft.text : committed);

  /** The whole object the sub-form holds, or why it cannot be used. */
  const check = (state: typeof form): { ok: true; value: unknown } | { ok: false; error: string } => {
    if (!state.on) return field.nullable ? { ok: true, value: null } : { ok: false, error: `${port.text} must be set` };
    const object: Record<string, unknown> = {};
    for (const [key, sub] of keys) {
      const checked = checkText(sub, state.texts[key] || "", `${port.text} ${sub.title || key}`, false, undefined);
      if (!checked.ok) return checked;
      if (checked.value !== undefined) object[key] = checked.value;
    }
    const error = problem(field, object, port.text);
    return error ? { ok: false, error } : { ok: true, value: object };
  };
  const edit = (state: typeof form, apply: boolean) => {
    const text = JSON.stringify(state);
    const checked = check(state);
    if (apply && checked.ok) commitValue(checked.value);
    else if (text === committed) store().setDraft(node.id, port.id, null);
    else store().setDraft(node.id, port.id, { text, error: checked.ok ? null : checked.error, shown: "the form's values" });
  };
  const commit = () => edit(form, true);
  return (
    <FieldFrame port={port} field={field} wire={wire} error={draft?.error || null} pending={Boolean(draft)}>
      <fieldset className="sub-form" data-testid={`param-${port.id}`} disabled={Boolean(wire)}>
        {field.nullable && (
          <label className="inline">
            <input type="checkbox" data-testid={`param-${port.id}-enabled`} checked={form.on} onChange={(e) => edit({ ...form, on: e.target.checked }, true)} /> set
          </label>
        )}
        {keys.map(([key, sub]) => (
          <label key={key} className="sub-field" title={sub.help}>
            <span>{sub.title || key}</span>
            <input type="text" data-testid={`param-${port.id}.${key}`} value={form.texts[key]} disabled={!form.on} spellCheck={false}
              placeholder={sub.nullable ? "none" : ""}
              onChange={(e) => edit({ ...form, texts: { ...form.texts, [key]: e.target.value } }, false)}
              onBlur={commit} onKeyDown={(e) => e.key === "Enter" && commit()} />
          </label>
        ))}
      </fieldset>
    </FieldFrame>
  );
}

function ParamField(props: FieldProps) {
  const { node, port, field } = props;
  const { value, set, fallback, draft, wire, store, commitValue } = useParam(props);
  const committedText = formatText(field, set ? value : undefined);
  const [text, setText] = useState(draft ? draft.text : committedText);
  const testid = `param-${port.id}`;

  // Undo, redo or a rename changed the committed value: show it (unless a draft is pending).
  useEffect(() => {
    if (!draft) setText(committedText);
  }, [committedText, draft]);

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
    const multiline = field.kind === "json";
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

  return <FieldFrame port={port} field={field} wire={wire} error={error} pending={Boolean(draft)}>{control}</FieldFrame>;
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
      {makesTensors(card) && <CardStatistics nodeId={node.id} />}
      {literal.map((port) => {
        const field = describe(root.properties[port.id], root);
        const Form = field.kind === "object" ? ObjectField : ParamField;
        return <Form key={`${node.id}/${port.id}`} node={node} port={port} field={field} />;
      })}
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
