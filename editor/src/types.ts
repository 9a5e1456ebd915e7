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

/** The type of a port carrying a tensor (CONTRACT §2): only such outputs have card statistics. */
export const TENSOR_TYPE = "NeuralNetworkTensor";

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

/** Per channel along the card's feature axis (contract/inspection.py); non-finite numbers may come as strings. */
export interface ChannelStatistics {
  mean: number[];
  std: number[];
  min: number[];
  max: number[];
  zeros: number[];
  nonfinite: number[];
}

export interface TensorStatistics {
  shape: number[];
  axis: number | null;
  channels: ChannelStatistics;
  histogram: { edges: number[]; counts: number[] };
}

export interface NodeInspection {
  outputs: Record<string, TensorStatistics>;
  /** Set for cards that report the tensor entering them (batch normalization), with the fields below. */
  input?: TensorStatistics | null;
  batch_mean?: number[] | null;
  batch_variance?: number[] | null;
  moving_mean?: number[] | null;
  moving_variance?: number[] | null;
  gamma?: number[] | null;
  beta?: number[] | null;
}

export interface Inspection {
  epoch: number | null;
  training: boolean;
  nodes: Record<string, NodeInspection>;
}

export interface RunStep extends Partial<Inspection> {
  kind: string;
  outputs?: Record<string, unknown>;
  history?: Record<string, number[]>;
  metrics?: Record<string, number>;
  inspections?: Inspection[] | null;
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
