// The palette: search (title and id matches first, then category and Keras names, then help
// text), recently used cards and the flagship Batch normalization card on top, the catalogue as
// a tree below. A card is added by dragging it onto the canvas, or by pressing Enter on it.

import { useReactFlow } from "@xyflow/react";
import { useMemo, useState, type KeyboardEvent, type ReactElement, type PointerEvent as ReactPointerEvent } from "react";
import { useEditor } from "./store";
import type { Card } from "./types";

const DRAG_THRESHOLD = 4;
export const FLAGSHIP = "layer_BatchNormalization";

/** 0: every word in the title or id; 1: also in the category or Keras name; 2: in the help; null: no match. */
export function rank(card: Card, words: string[]): number | null {
  const near = `${card.title} ${card.id}`.toLowerCase();
  const mid = `${near} ${card.path.join(" ")} ${card.keras || ""}`.toLowerCase();
  const far = `${mid} ${card.help}`.toLowerCase();
  if (words.every((w) => near.includes(w))) return 0;
  if (words.every((w) => mid.includes(w))) return 1;
  if (words.every((w) => far.includes(w))) return 2;
  return null;
}

export function search(cards: Card[], query: string): Card[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const phrase = words.join(" ");
  const scored = cards
    .map((card) => ({ card, score: rank(card, words) }))
    .filter((x): x is { card: Card; score: number } => x.score !== null)
    .map((x) => ({ ...x, starts: x.card.title.toLowerCase().startsWith(phrase) || x.card.id.toLowerCase() === phrase ? 0 : 1 }));
  scored.sort((a, b) => a.score - b.score || a.starts - b.starts || a.card.title.localeCompare(b.card.title));
  return scored.map((x) => x.card);
}

interface Tree {
  groups: Map<string, Tree>;
  cards: Card[];
}

function tree(cards: Card[]): Tree {
  const root: Tree = { groups: new Map(), cards: [] };
  for (const card of cards) {
    let branch = root;
    for (const part of card.path) {
      if (!branch.groups.has(part)) branch.groups.set(part, { groups: new Map(), cards: [] });
      branch = branch.groups.get(part)!;
    }
    branch.cards.push(card);
  }
  return root;
}

const countCards = (branch: Tree): number => branch.cards.length + [...branch.groups.values()].reduce((n, g) => n + countCards(g), 0);

export function Palette() {
  const cards = useEditor((s) => s.catalog.cards);
  const recent = useEditor((s) => s.recent);
  const [query, setQuery] = useState("");
  const flow = useReactFlow();

  const all = useMemo(() => [...cards.values()].sort((a, b) => a.path.join("/").localeCompare(b.path.join("/")) || a.title.localeCompare(b.title)), [cards]);
  const found = useMemo(() => (query.trim() ? search(all, query) : null), [all, query]);
  const grouped = useMemo(() => tree(all), [all]);

  const canvasRect = () => document.querySelector("[data-testid=canvas]")?.getBoundingClientRect();

  const add = (cardId: string, at?: { x: number; y: number }) => {
    const rect = canvasRect();
    const store = useEditor.getState();
    let position: { x: number; y: number };
    if (at) {
      position = flow.screenToFlowPosition(at);
    } else {
      // By keyboard: right of the last card added (the middle of the view for the first one),
      // and the view follows when that is off screen.
      const last = store.nodes[store.nodes.length - 1];
      const centre = rect ? { x: rect.left + rect.width / 2, y: rect.top + rect.height / 2 } : { x: 400, y: 300 };
      position = last
        ? { x: last.position.x + (last.measured?.width ?? 200) + 70, y: last.position.y }
        : flow.screenToFlowPosition({ x: centre.x - 100, y: centre.y - 60 });
      if (rect) {
        const far = flow.screenToFlowPosition({ x: rect.right, y: rect.bottom });
        if (position.x + 220 > far.x || position.y + 120 > far.y) {
          void flow.setCenter(position.x + 100, position.y + 50, { zoom: flow.getZoom(), duration: 150 });
        }
      }
    }
    const id = store.addNode(cardId, position);
    store.notify(`Added ${id}. Wire it by dragging from a socket, or press Enter on an output socket and then on an input.`);
  };

  const onKey = (cardId: string) => (event: KeyboardEvent) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      add(cardId);
    }
  };

  /** Drags a ghost of the card; dropping it over the canvas adds the card there. */
  const onPointerDown = (card: Card) => (event: ReactPointerEvent<HTMLElement>) => {
    if (event.button !== 0) return;
    event.preventDefault();
    const item = event.currentTarget;
    item.focus();
    const start = { x: event.clientX, y: event.clientY };
    let ghost: HTMLElement | null = null;
    item.setPointerCapture(event.pointerId);
    const move = (e: PointerEvent) => {
      if (!ghost && Math.hypot(e.clientX - start.x, e.clientY - start.y) < DRAG_THRESHOLD) return;
      if (!ghost) {
        ghost = document.createElement("div");
        ghost.className = "drag-ghost";
        ghost.textContent = card.title;
        document.body.append(ghost);
      }
      ghost.style.left = `${e.clientX}px`;
      ghost.style.top = `${e.clientY}px`;
    };
    const up = (e: PointerEvent) => {
      item.removeEventListener("pointermove", move);
      item.removeEventListener("pointerup", up);
      item.removeEventListener("pointercancel", up);
      if (!ghost) return;
      ghost.remove();
      const rect = canvasRect();
      if (e.type !== "pointerup" || !rect) return;
      if (e.clientX < rect.left || e.clientX > rect.right || e.clientY < rect.top || e.clientY > rect.bottom) return;
      add(card.id, { x: e.clientX - 20, y: e.clientY - 14 });
    };
    item.addEventListener("pointermove", move);
    item.addEventListener("pointerup", up);
    item.addEventListener("pointercancel", up);
  };

  const item = (card: Card, hook = "palette-card") => (
    <div
      key={card.id}
      className="palette-card"
      tabIndex={0}
      role="button"
      data-testid={`${hook}-${card.id}`}
      title={card.help.split("\n")[0]}
      aria-label={`${card.title}: drag onto the canvas, or press Enter to add it`}
      onPointerDown={onPointerDown(card)}
      onKeyDown={onKey(card.id)}
    >
      <span>{card.title}</span>
      <code>{card.id}</code>
    </div>
  );

  const branch = (node: Tree, depth: number): ReactElement[] => [
    ...[...node.groups.entries()].map(([name, sub]) => (
      <details key={name} className="palette-group">
        <summary>{name} <span className="muted">{countCards(sub)}</span></summary>
        {branch(sub, depth + 1)}
      </details>
    )),
    ...node.cards.map((card) => item(card)),
  ];

  const quick = [FLAGSHIP, ...recent.filter((id) => id !== FLAGSHIP)].map((id) => cards.get(id)).filter((c): c is Card => Boolean(c));

  return (
    <nav className="palette" aria-label="Card palette">
      <input
        type="search"
        data-testid="palette-search"
        placeholder="Search cards"
        aria-label="Search cards"
        value={query}
        onChange={(e) => setQuery(e.target.value)}
      />
      <div className="palette-list">
        {found ? (
          found.length ? found.map((card) => item(card)) : <p className="muted">No card matches "{query}".</p>
        ) : (
          <>
            <h3 className="palette-heading">Quick</h3>
            <div className="palette-quick" data-testid="palette-quick">{quick.map((card) => item(card, "palette-quick"))}</div>
            <h3 className="palette-heading">All cards</h3>
            {branch(grouped, 0)}
          </>
        )}
      </div>
    </nav>
  );
}
