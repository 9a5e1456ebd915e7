// The palette: every card of the catalogue in its category tree (the card's `path`), a search
// box, and two ways to add a card: drag it onto the canvas, or press Enter on it.

import { el } from "./dom.js";

const DRAG_THRESHOLD = 4;

function matches(card, words) {
  const haystack = [card.title, card.id, ...card.path, card.keras || "", card.help].join(" ").toLowerCase();
  return words.every((word) => haystack.includes(word));
}

/** Nests cards by their path: {groups: Map(name → tree), cards: [...]}. */
function tree(cards) {
  const root = { groups: new Map(), cards: [] };
  for (const card of cards) {
    let branch = root;
    for (const part of card.path) {
      if (!branch.groups.has(part)) branch.groups.set(part, { groups: new Map(), cards: [] });
      branch = branch.groups.get(part);
    }
    branch.cards.push(card);
  }
  return root;
}

export class Palette {
  constructor(element, catalog, canvas) {
    this.element = element;
    this.catalog = catalog;
    this.canvas = canvas;
    this.search = element.querySelector("[data-testid=palette-search]");
    this.list = element.querySelector(".palette-tree");
    this.search.addEventListener("input", () => this.render());
    this.list.addEventListener("pointerdown", (event) => this.onPointerDown(event));
    this.list.addEventListener("keydown", (event) => {
      const item = event.target.closest(".palette-card");
      if (item && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        this.canvas.addCard(item.dataset.card);
      }
    });
    this.render();
  }

  render() {
    const words = this.search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const cards = [...this.catalog.cards.values()].filter((card) => matches(card, words));
    const sorted = cards.sort((a, b) => a.path.join("/").localeCompare(b.path.join("/")) || a.title.localeCompare(b.title));
    this.list.replaceChildren(...(sorted.length ? this.renderBranch(tree(sorted), words.length > 0) : [this.emptyNote()]));
  }

  emptyNote() {
    return el("p", { class: "muted", text: `No card matches "${this.search.value}".` });
  }

  renderBranch(branch, expand) {
    const items = [];
    for (const [name, sub] of branch.groups) {
      const group = el("details", { class: "palette-group" }, el("summary", { text: name }), ...this.renderBranch(sub, expand));
      group.open = expand || branch.groups.size <= 6;
      items.push(group);
    }
    for (const card of branch.cards) {
      items.push(el("div", {
        class: "palette-card", tabindex: "0", role: "button", "data-card": card.id,
        "data-testid": `palette-card-${card.id}`, title: card.help.split("\n")[0],
        "aria-label": `${card.title}: drag onto the canvas, or press Enter to add it`,
      }, el("span", { text: card.title }), el("code", { text: card.id })));
    }
    return items;
  }

  /** Drags a ghost of the card; dropping it over the canvas adds the card there. */
  onPointerDown(event) {
    const item = event.target.closest(".palette-card");
    if (!item || event.button !== 0) return;
    event.preventDefault();
    item.focus();
    const start = { x: event.clientX, y: event.clientY };
    let ghost = null;
    item.setPointerCapture(event.pointerId);
    const move = (e) => {
      if (!ghost && Math.hypot(e.clientX - start.x, e.clientY - start.y) < DRAG_THRESHOLD) return;
      if (!ghost) {
        ghost = el("div", { class: "drag-ghost", text: this.catalog.cards.get(item.dataset.card).title });
        document.body.append(ghost);
      }
      ghost.style.left = `${e.clientX}px`;
      ghost.style.top = `${e.clientY}px`;
    };
    const up = (e) => {
      item.removeEventListener("pointermove", move);
      item.removeEventListener("pointerup", up);
      item.removeEventListener("pointercancel", up);
      if (!ghost) return;
      ghost.remove();
      if (e.type === "pointerup") this.canvas.dropCard(item.dataset.card, e.clientX, e.clientY);
    };
    item.addEventListener("pointermove", move);
    item.addEventListener("pointerup", up);
    item.addEventListener("pointercancel", up);
  }
}
