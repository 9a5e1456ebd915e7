// Boots the editor: loads the catalogue and the types, then wires palette, canvas, form,
// live validation, run panel, save/load and the autosave together.

import { api } from "./api.js";
import { Canvas } from "./canvas.js";
import { Inspector } from "./inspector.js";
import { Palette } from "./palette.js";
import { RunPanel } from "./run.js";
import { GraphStore } from "./store.js";
import { LiveValidation } from "./validation.js";

const $ = (selector) => document.querySelector(selector);

function notifier(element) {
  return (message, level = "info") => {
    element.textContent = message;
    element.classList.toggle("error", level === "error");
    element.setAttribute("role", level === "error" ? "alert" : "status");
  };
}

function download(graph) {
  const blob = new Blob([JSON.stringify(graph, null, 2)], { type: "application/json" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "graph.json";
  link.click();
  URL.revokeObjectURL(link.href);
}

async function boot() {
  const notify = notifier($("[data-testid=notice]"));
  const [cards, types] = await Promise.all([api.cards(), api.types()]);
  const catalog = {
    cards: new Map(cards.cards.map((card) => [card.id, card])),
    types: new Map(types.types.map((type) => [type.id, type])),
  };
  for (const failure of cards.load_errors || []) notify(`Card pack ${failure.pack} failed to load: ${failure.message}`, "error");

  const store = new GraphStore(catalog);
  const canvas = new Canvas($("[data-testid=canvas]"), store, catalog, notify);
  const inspector = new Inspector($(".inspector"), store, catalog);
  const validation = new LiveValidation($("[data-testid=errors]"), store, canvas);
  const runs = new RunPanel($(".run-panel"), store, validation);
  new Palette($(".palette"), catalog, canvas);

  canvas.addEventListener("select", (event) => inspector.show(event.detail.id));
  store.addEventListener("change", (event) => {
    const renamed = event.detail.renamed;
    if (renamed && canvas.selected === renamed.from) canvas.selected = renamed.to;
    canvas.render();
    store.autosave();
    if (event.detail.kind === "layout") return;
    if (event.detail.kind === "structure") {
      inspector.refresh();
      runs.refresh();
      validation.schedule();
    } else {
      validation.render();
    }
  });

  $("[data-testid=save]").addEventListener("click", () => download(store.toJSON()));
  $("[data-testid=load]").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      store.load(JSON.parse(await file.text()));
      canvas.select(null);
      notify(`Loaded ${file.name}: ${store.nodes.size} nodes, ${store.edges.length} wires.`);
    } catch (error) {
      notify(`Could not load ${file.name}: ${error.message}`, "error");
    }
    event.target.value = "";
  });
  $("[data-testid=clear]").addEventListener("click", () => {
    store.clear();
    notify("Started a new, empty graph.");
  });

  if (store.restore()) notify(`Restored the graph kept in this browser: ${store.nodes.size} nodes, ${store.edges.length} wires.`);
  else {
    validation.render();
    notify("Drag cards from the palette onto the canvas, or focus one and press Enter.");
  }
  document.body.dataset.ready = "true";
}

boot().catch((error) => {
  const notice = $("[data-testid=notice]");
  notice.textContent = `The editor could not start: ${error.message}`;
  notice.classList.add("error");
});
