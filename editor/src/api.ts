// The REST API of CONTRACT §6, relative to the page so the editor also works behind a prefix.
// A token given as `/?token=…` is kept for the tab (sessionStorage) and sent as a bearer token
// on every request, the event streams included (they are read with fetch, not EventSource,
// which cannot send headers).

import type { ApiErrorBody, Graph, RunResult, RunSummary, TypeInfo, Card, Validation } from "./types";

const BASE = new URL("api/v1/", document.baseURI);
const TOKEN_KEY = "nncards.token";

function readToken(): string | null {
  const url = new URL(window.location.href);
  const given = url.searchParams.get("token");
  if (given) {
    try {
      sessionStorage.setItem(TOKEN_KEY, given);
    } catch {
      // storage disabled: the token still serves this page
    }
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
    return given;
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

const token = readToken();

/** Keeps a token typed by the user for this tab (the page reloads to use it). */
export function saveToken(value: string): void {
  try {
    sessionStorage.setItem(TOKEN_KEY, value);
  } catch {
    // storage disabled: nothing to keep it in
  }
}

export const hasToken = () => token !== null;

function headers(json: boolean): Record<string, string> {
  const result: Record<string, string> = {};
  if (json) result["Content-Type"] = "application/json";
  if (token) result.Authorization = `Bearer ${token}`;
  return result;
}

export class ApiError extends Error {
  status: number;
  error: ApiErrorBody;
  /** An error answer: `error` is the envelope's inner object (code, message, errors). */
  constructor(status: number, error: ApiErrorBody) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.error = error;
  }
}

async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(new URL(path, BASE), { ...init, headers: headers(Boolean(init.body)) });
  const text = await response.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = body && body.error ? body.error : { code: "http_error", message: `${response.status} ${response.statusText}` };
    throw new ApiError(response.status, error);
  }
  return body as T;
}

const post = <T>(path: string, payload: unknown) => request<T>(path, { method: "POST", body: JSON.stringify(payload) });
const runPath = (id: string) => `runs/${encodeURIComponent(id)}`;

export interface RunEvent {
  event: string;
  id: string | null;
  data: any;
}

/**
 * Follows a run's server-sent events until the stream ends or `signal` aborts; calls `onEvent`
 * for each. Resolves when the stream closes (normally after `done`).
 */
async function followEvents(id: string, onEvent: (event: RunEvent) => void, signal: AbortSignal): Promise<void> {
  const response = await fetch(new URL(`${runPath(id)}/events`, BASE), {
    headers: { ...headers(false), Accept: "text/event-stream" },
    signal,
  });
  if (!response.ok || !response.body) throw new ApiError(response.status, { code: "http_error", message: `events: HTTP ${response.status}` });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut: number;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      let eventId: string | null = null;
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const content = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = content;
        else if (field === "id") eventId = content;
        else if (field === "data") data.push(content);
      }
      if (!data.length) continue;
      let parsed: unknown = data.join("\n");
      try {
        parsed = JSON.parse(parsed as string);
      } catch {
        // plain text data stays text
      }
      onEvent({ event, id: eventId, data: parsed });
    }
  }
}

export const api = {
  cards: () => request<{ cards: Card[]; load_errors?: { pack: string; message: string }[] }>("cards"),
  types: () => request<{ types: TypeInfo[] }>("types"),
  validate: (graph: Graph) => post<Validation>("graphs/validate", graph),
  startRun: (run: unknown) => post<{ run_id: string; status: string }>("runs", run),
  run: (id: string) => request<RunResult>(runPath(id)),
  runs: (limit = 20) => request<{ runs: RunSummary[]; total: number }>(`runs?limit=${limit}&offset=0`),
  cancelRun: (id: string) => request<RunResult>(runPath(id), { method: "DELETE" }),
  followEvents,
};
