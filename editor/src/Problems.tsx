// The problems list under the canvas: form texts that cannot be applied, then the server's
// validation findings. Clicking one selects its node and brings it into view.

import { draftProblems, useEditor } from "./store";

export function Problems() {
  const validation = useEditor((s) => s.validation);
  const drafts = useEditor((s) => s.drafts);
  const empty = useEditor((s) => s.nodes.length === 0);
  const flagged = draftProblems(drafts);
  const items = [
    ...flagged.map((d) => ({ node: d.node, port: d.port, text: `${d.message} (not applied)`, code: "in the form" })),
    ...(validation.failure ? [{ node: null, port: null, text: validation.failure, code: "request" }] : []),
    ...validation.errors.map((e) => ({
      node: e.node ?? null, port: e.port ?? null,
      text: `${e.message}${e.edge !== undefined && e.edge !== null ? ` (wire ${e.edge + 1})` : ""}`, code: e.code,
    })),
  ];
  let status: string;
  if (validation.pending) status = "Checking the graph…";
  else if (empty) status = "The canvas is empty: drag cards from the palette, or focus one and press Enter.";
  else if (!items.length) status = "The graph is valid.";
  else status = `${items.length} problem${items.length === 1 ? "" : "s"}:`;
  return (
    <section className={`problems${items.length ? " has-error" : ""}`} data-testid="errors" aria-live="polite" aria-label="Problems">
      <p className="status">{status}</p>
      {items.length > 0 && (
        <ul>
          {items.map((item, i) => (
            <li key={i}>
              {item.node ? (
                <button type="button" className="link" onClick={() => useEditor.getState().focusNode(item.node!)}>
                  {item.node}{item.port ? ` · ${item.port}` : ""}
                </button>
              ) : null}
              {item.node ? ": " : ""}{item.text} <code>{item.code}</code>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
