// The editor's frame: toolbar, palette, canvas with its problems list, inspector and run panel;
// keyboard shortcuts; the confirmation before New or Load replaces unsaved work.

import { useReactFlow } from "@xyflow/react";
import { useEffect, useRef, useState } from "react";
import { Canvas, FIT } from "./Canvas";
import { Inspector } from "./Inspector";
import { arrange } from "./layout";
import { Palette } from "./Palette";
import { Problems } from "./Problems";
import { runBlocker } from "./run";
import { RunPanel } from "./RunPanel";
import { useEditor } from "./store";

interface Question {
  text: string;
  yes: string;
  then: () => void;
}

const editable = (target: EventTarget | null) =>
  target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));

function saveGraph() {
  const graph = useEditor.getState().graph();
  const blob = new Blob([JSON.stringify(graph, null, 2)], { type: "application/json" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "graph.json";
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  useEditor.getState().markSaved();
  useEditor.getState().notify("Saved the graph as graph.json.");
}

function Notice() {
  const notice = useEditor((s) => s.notice);
  return (
    <p className={`notice ${notice.level}`} data-testid="notice" role={notice.level === "error" ? "alert" : "status"} aria-live="polite">
      {notice.text}
    </p>
  );
}

function RunButton() {
  const blocker = useEditor(runBlocker);
  const running = useEditor((s) => Boolean(s.current?.runId && s.current.status !== "succeeded" && s.current.status !== "failed" && s.current.status !== "cancelled"));
  return (
    <div className="run-control">
      <button type="button" className="primary" data-testid="run" disabled={Boolean(blocker)} title={blocker || "Run the graph"}
        onClick={() => void useEditor.getState().startRun()}>
        {running ? "Running…" : "Run"}
      </button>
      {blocker && !running && <span className="run-blocked" data-testid="run-blocked" title={blocker}>{blocker}</span>}
    </div>
  );
}

export function App() {
  const flow = useReactFlow();
  const canUndo = useEditor((s) => s.past.length > 0);
  const canRedo = useEditor((s) => s.future.length > 0);
  const [question, setQuestion] = useState<Question | null>(null);
  const loadInput = useRef<HTMLInputElement>(null);
  const fit = () => window.requestAnimationFrame(() => void flow.fitView({ ...FIT, duration: 200 }));

  const guard = (text: string, yes: string, then: () => void) => {
    const state = useEditor.getState();
    if (state.dirty && state.nodes.length) setQuestion({ text, yes, then });
    else then();
  };

  const arrangeNow = async () => {
    const state = useEditor.getState();
    if (!state.nodes.length) return;
    const canvas = document.querySelector("[data-testid=canvas]")?.getBoundingClientRect();
    state.setPositions(await arrange(state.nodes, state.edges, canvas ? { width: canvas.width, height: canvas.height } : { width: 800, height: 500 }));
    state.notify("Arranged the graph from left to right (Ctrl+Z undoes it).");
    fit();
  };

  const loadFile = async (file: File) => {
    const store = useEditor.getState();
    try {
      const graph = JSON.parse(await file.text());
      store.load(graph);
      const positioned = graph.nodes.every((n: any) => n.position && Number.isFinite(n.position.x));
      store.notify(`Loaded ${file.name}: ${graph.nodes.length} nodes, ${graph.edges.length} wires.`);
      // Wait for React Flow to measure the new nodes, then lay them out if the file had no positions.
      window.setTimeout(() => (positioned ? fit() : void arrangeNow().then(() => useEditor.getState().markSaved())), 60);
    } catch (error) {
      store.notify(`Could not load ${file.name}: ${(error as Error).message}`, "error");
    }
  };

  useEffect(() => {
    document.body.dataset.ready = "true";
    performance.mark("nncards-ready"); // time to interactive, for anyone measuring it
    const onKey = (event: KeyboardEvent) => {
      if (editable(event.target)) return;
      const store = useEditor.getState();
      const ctrl = event.ctrlKey || event.metaKey;
      const key = event.key.toLowerCase();
      if (ctrl && key === "z" && !event.shiftKey) store.undo();
      else if (ctrl && (key === "y" || (key === "z" && event.shiftKey))) store.redo();
      else if (ctrl && key === "c") {
        const n = store.copy();
        if (n) store.notify(`Copied ${n} card${n > 1 ? "s" : ""}: Ctrl+V pastes them.`);
        else return;
      } else if (ctrl && key === "v") {
        const n = store.paste();
        if (n) store.notify(`Pasted ${n} card${n > 1 ? "s" : ""}.`);
        else return;
      } else if (ctrl && key === "a") {
        store.select(store.nodes.map((n) => n.id));
      } else if (event.key === "Escape") {
        store.pick("", null);
        return;
      } else return;
      event.preventDefault();
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, []);

  return (
    <div className="app">
      <header className="toolbar">
        <h1>nncards</h1>
        <button type="button" data-testid="clear" onClick={() => guard("Start a new graph? The current one has unsaved changes.", "Discard and start new", () => {
          useEditor.getState().clear();
          useEditor.getState().notify("Started a new, empty graph (Ctrl+Z brings the old one back).");
        })}>New</button>
        <label className="button">
          Load
          <input ref={loadInput} type="file" accept=".json,application/json" data-testid="load" hidden onChange={(e) => {
            const file = e.target.files?.[0];
            e.target.value = "";
            if (file) guard(`Load ${file.name}? The current graph has unsaved changes.`, "Discard and load", () => void loadFile(file));
          }} />
        </label>
        <button type="button" data-testid="save" onClick={saveGraph}>Save</button>
        <span className="sep" />
        <button type="button" data-testid="undo" disabled={!canUndo} onClick={() => useEditor.getState().undo()} title="Undo (Ctrl+Z)">Undo</button>
        <button type="button" data-testid="redo" disabled={!canRedo} onClick={() => useEditor.getState().redo()} title="Redo (Ctrl+Shift+Z)">Redo</button>
        <button type="button" data-testid="arrange" onClick={() => void arrangeNow()} title="Lay the graph out from left to right">Arrange</button>
        <button type="button" data-testid="fit-view" onClick={fit} title="Show the whole graph">Fit</button>
        <span className="sep" />
        <RunButton />
        <Notice />
      </header>
      <main className="layout">
        <Palette />
        <div className="centre">
          <Canvas />
          <Problems />
        </div>
        <aside className="side">
          <Inspector />
          <RunPanel />
        </aside>
      </main>
      {question && (
        <div className="modal-backdrop">
          <div className="modal" role="alertdialog" aria-modal="true" aria-labelledby="confirm-text">
            <p id="confirm-text">{question.text}</p>
            <div className="modal-buttons">
              <button type="button" className="danger" data-testid="confirm-yes" onClick={() => { setQuestion(null); question.then(); }}>{question.yes}</button>
              <button type="button" data-testid="confirm-no" autoFocus onClick={() => setQuestion(null)}>Cancel</button>
            </div>
          </div>
        </div>
      )}
    </div>
  );
}
