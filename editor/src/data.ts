// Data for runs: seeded random batches, CSV text and .npy files turned into ARRAYs (CONTRACT §6).

export const RANDOM_SEED = 0;
export const RANDOM_BATCH = 8;

/** Mulberry32: a small, well-known 32-bit generator; the same seed gives the same numbers everywhere. */
export function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A standard normal draw (Box–Muller), rounded to 4 decimals so the shown data is exact. */
function normal(uniform: () => number): number {
  const u = 1 - uniform();
  const v = uniform();
  return Math.round(Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v) * 1e4) / 1e4;
}

function nest(flat: unknown[], shape: number[]): unknown[] {
  if (shape.length === 1) return flat;
  const size = flat.length / shape[0];
  return Array.from({ length: shape[0] }, (_, i) => nest(flat.slice(i * size, (i + 1) * size), shape.slice(1)));
}

const product = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

/**
 * Random batches for the given inputs, drawn in order from one generator: normal values for
 * float inputs, integers 0..9 for integer inputs, coin flips for bool inputs.
 * `inputs` is a list of {id, shape, dtype}; returns {id: nested list of shape [batch, ...shape]}.
 */
export function randomInputs(inputs: { id: string; shape: number[]; dtype: string }[], seed = RANDOM_SEED, batch = RANDOM_BATCH): Record<string, unknown[]> {
  const uniform = generator(seed);
  const draw: Record<string, () => unknown> = {
    bool: () => uniform() < 0.5,
    int: () => Math.floor(uniform() * 10),
    float: () => normal(uniform),
  };
  const result: Record<string, unknown[]> = {};
  for (const { id, shape, dtype } of inputs) {
    const kind = dtype === "bool" ? "bool" : dtype.startsWith("int") ? "int" : "float";
    const full = [batch, ...shape];
    result[id] = nest(Array.from({ length: product(full) }, draw[kind]), full);
  }
  return result;
}

/**
 * CSV (or whitespace-separated) text as an ARRAY of shape [rows, ...sampleShape]; a first line
 * that is not numeric is taken as a header. `sampleShape` may hold nulls (any size) only when
 * it has one dimension. Throws an Error with a readable message.
 */
export function parseCsv(text: string, sampleShape: (number | null)[] | null, label: string): unknown[] {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const rows = lines.map((line) => line.split(/[,;\t ]+/).map(Number));
  if (rows.length && rows[0].some(Number.isNaN)) rows.shift();
  if (!rows.length) throw new Error(`${label}: no data rows.`);
  const width = rows[0].length;
  rows.forEach((row, i) => {
    if (row.length !== width) throw new Error(`${label}: row ${i + 1} has ${row.length} values, the first has ${width}.`);
    if (row.some(Number.isNaN)) throw new Error(`${label}: row ${i + 1} holds something that is not a number.`);
  });
  const known = sampleShape !== null && sampleShape.every((d) => d !== null);
  const sample = sampleShape as number[];
  if (known && product(sample) !== width) {
    throw new Error(`${label}: each row needs ${product(sample)} values for the shape (${sample.join(", ")}), got ${width}.`);
  }
  const shape = known ? [rows.length, ...sample] : [rows.length, width];
  return nest(rows.flat(), shape);
}

const NPY_DTYPES: Record<string, string> = { f2: "float16", f4: "float32", f8: "float64", i4: "int32", i8: "int64", b1: "bool" };

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** A NumPy .npy file as a base64 ARRAY {dtype, shape, base64}. Throws an Error with a readable message. */
export interface NpyArray { dtype: string; shape: number[]; base64: string }

/** The first `count` samples of an ARRAY: a nested list or a base64 .npy array (C order, batch first). */
export function firstSamples(array: unknown, count: number): unknown {
  if (Array.isArray(array)) return array.slice(0, count);
  const npy = array as NpyArray;
  if (npy.shape[0] <= count) return npy;
  const bytes = atob(npy.base64);
  const sampleBytes = bytes.length / npy.shape[0];
  return { ...npy, shape: [count, ...npy.shape.slice(1)], base64: btoa(bytes.slice(0, count * sampleBytes)) };
}

export function parseNpy(buffer: ArrayBuffer, label: string): NpyArray {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.subarray(1, 6));
  if (bytes[0] !== 0x93 || magic !== "NUMPY") throw new Error(`${label}: not a .npy file.`);
  const view = new DataView(buffer);
  const major = bytes[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder("latin1").decode(bytes.subarray(start, start + headerLength));
  const descr = /'descr':\s*'([<>|=])(\w+)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shapeText) throw new Error(`${label}: unreadable .npy header.`);
  const dtype = NPY_DTYPES[descr[2]];
  if (!dtype || descr[1] === ">") throw new Error(`${label}: dtype ${descr[1]}${descr[2]} is not supported (use little-endian float16/32/64, int32/64 or bool).`);
  if (fortran[1] === "True") throw new Error(`${label}: Fortran-ordered arrays are not supported; save with C order.`);
  const shape = shapeText[1].split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (!shape.length) throw new Error(`${label}: a scalar is not a batch; the first dimension must count samples.`);
  const itemSize = Number(descr[2].slice(1));
  const data = bytes.subarray(start + headerLength);
  if (data.length !== product(shape) * itemSize) throw new Error(`${label}: the data holds ${data.length} bytes, the header promises ${product(shape) * itemSize}.`);
  return { dtype, shape, base64: base64(data) };
}
