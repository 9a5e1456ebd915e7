// Boots the editor: loads the catalogue and the types, restores the graph kept in this browser,
// starts the watchers (live validation, autosave, clearing old results) and renders the app.

import { ReactFlowProvider } from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { api, ApiError, hasToken, saveToken } from "./api";
import { App } from "./App";
import { readStoredGraph, useEditor } from "./store";
import "./styles.css";
import { startWatchers } from "./watch";

async function boot() {
  const [cards, types] = await Promise.all([api.cards(), api.types()]);
  const store = useEditor.getState();
  useEditor.setState({
    catalog: {
      cards: new Map(cards.cards.map((card) => [card.id, card])),
      types: new Map(types.types.map((type) => [type.id, type])),
    },
  });
  const saved = readStoredGraph();
  if (saved) {
    store.load(saved);
    useEditor.setState({ past: [], future: [], dirty: false });
    store.notify(`Restored the graph kept in this browser: ${saved.nodes.length} nodes, ${saved.edges.length} wires.`);
  } else {
    store.notify("Drag cards from the palette onto the canvas, or focus one and press Enter.");
  }
  for (const failure of cards.load_errors || []) store.notify(`Card pack ${failure.pack} failed to load: ${failure.message}`, "error");
  startWatchers();
  createRoot(document.getElementById("root")!).render(
    <StrictMode>
      <ReactFlowProvider>
        <App />
      </ReactFlowProvider>
    </StrictMode>,
  );
}

/** The server has a token and this tab has none (or a wrong one): ask for it. */
function askForToken(refused: boolean) {
  const form = document.createElement("form");
  form.className = "token-form";
  form.dataset.testid = "token-form";
  form.innerHTML = `<h1>nncards</h1>
    <p>${refused ? "The server refused this token." : "This server needs its token."} Open the address
    <code>nncards serve</code> printed (it ends with <code>?token=…</code>), or paste the token here.</p>
    <label>Token <input type="password" name="token" autocomplete="off" data-testid="token-input" required></label>
    <button type="submit" class="primary">Open the editor</button>`;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    saveToken((form.elements.namedItem("token") as HTMLInputElement).value.trim());
    window.location.reload();
  });
  document.getElementById("root")!.replaceChildren(form);
}

boot().catch((error) => {
  if (error instanceof ApiError && error.status === 401) {
    askForToken(hasToken());
    return;
  }
  document.body.textContent = `The editor could not start: ${(error as Error).message}`;
  document.body.classList.add("boot-error");
});


