// The REST API of CONTRACT §6, relative to the page so the editor also works behind a prefix.

const BASE = new URL("api/v1/", document.baseURI);

export class ApiError extends Error {
  /** An error answer: `body.error` is the envelope's inner object (code, message, errors). */
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.error = error;
  }
}

async function request(path, options = {}) {
  const response = await fetch(new URL(path, BASE), {
    ...options,
    headers: options.body ? { "Content-Type": "application/json" } : {},
  });
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = body && body.error ? body.error : { code: "http_error", message: `${response.status} ${response.statusText}` };
    throw new ApiError(response.status, error);
  }
  return body;
}

const post = (path, payload) => request(path, { method: "POST", body: JSON.stringify(payload) });

export const api = {
  cards: () => request("cards"),
  types: () => request("types"),
  validate: (graph) => post("graphs/validate", graph),
  startRun: (run) => post("runs", run),
  run: (id) => request(`runs/${encodeURIComponent(id)}`),
  cancelRun: (id) => request(`runs/${encodeURIComponent(id)}`, { method: "DELETE" }),
  eventsUrl: (id) => new URL(`runs/${encodeURIComponent(id)}/events`, BASE).href,
};
