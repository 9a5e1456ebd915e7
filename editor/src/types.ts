// The formats of the nncards contract (CONTRACT §2–§6) as the editor uses them.

export interface Port {
  id: string;
  text: string;
  type: string;
  help: string;
  multiplicity: string;
  required: boolean;
  literal: boolean;
  socket: boolean;
  default: unknown;
}

export interface Card {
  id: string;
  version: number;
  title: string;
  path: string[];
  help: string;
  keras?: string;
  inputs: Port[];
  outputs: Port[];
  params_schema: Record<string, any>;
}

export interface TypeInfo {
  id: string;
  help: string;
  literal: boolean;
  socket: boolean;
  color: string;
}

export interface Catalog {
  cards: Map<string, Card>;
  types: Map<string, TypeInfo>;
}

export type Params = Record<string, unknown>;

export interface GraphNode {
  id: string;
  card: string;
  params: Params;
  position: { x: number; y: number };
}

export interface GraphEdge {
  source: string;
  source_port: string;
  target: string;
  target_port: string;
}

export interface Graph {
  schema_version: 1;
  nodes: GraphNode[];
  edges: GraphEdge[];
}

export interface Problem {
  code: string;
  message: string;
  node?: string | null;
  port?: string | null;
  edge?: number | null;
  expected?: unknown;
  received?: unknown;
}

export interface Validation {
  valid: boolean;
  errors: Problem[];
  shapes: Record<string, Record<string, unknown>>;
}

export interface ApiErrorBody {
  code: string;
  message: string;
  errors?: Problem[];
}

export interface RunStep {
  kind: string;
  outputs?: Record<string, unknown>;
  history?: Record<string, number[]>;
  metrics?: Record<string, number>;
}

export interface LayerResult {
  class: string;
  config?: Record<string, unknown>;
  weights?: Record<string, unknown>;
  [fact: string]: unknown;
}

export interface RunResult {
  run_id: string;
  status: string;
  error: ApiErrorBody | null;
  steps: RunStep[];
  layers?: Record<string, LayerResult>;
  model?: { inputs: Record<string, unknown>; outputs: Record<string, unknown>; params: number };
}

export interface RunSummary {
  run_id: string;
  status: string;
  created_at: string;
  finished_at: string | null;
}
