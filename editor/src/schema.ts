// A card's `params_schema` (JSON Schema as Pydantic emits it) turned into field descriptions the
// form renders, the checks a value must pass before it enters the graph, and the text ↔ value
// conversions of the form's text boxes.

export type Kind = "boolean" | "integer" | "number" | "string" | "enum" | "array" | "object" | "json";

export interface Field {
  kind: Kind;
  nullable: boolean;
  title: string;
  help: string;
  default: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  items?: Field;
  properties?: Record<string, Field>;
  required?: string[];
}

type Schema = Record<string, any>;

function resolveRef(schema: Schema, root: Schema): Schema {
  let current: Schema | undefined = schema;
  while (current && current.$ref) {
    const path: string[] = String(current.$ref).replace(/^#\//, "").split("/");
    current = path.reduce((node: any, key: string) => node && node[key], root as any);
  }
  return current || {};
}

function kindOf(schema: Schema): Kind {
  if (Array.isArray(schema.enum)) return "enum";
  switch (schema.type) {
    case "boolean":
    case "integer":
    case "number":
    case "string":
    case "array":
      return schema.type;
    case "object":
      return schema.properties ? "object" : "json";
    default:
      return "json";
  }
}

/** The field description of one property of a `params_schema` (`root` resolves `$ref`s). */
export function describe(schema: Schema, root: Schema = schema): Field {
  const resolved = resolveRef(schema, root);
  const members: Schema[] = (resolved.anyOf || resolved.oneOf || [resolved]).map((m: Schema) => resolveRef(m, root));
  const nonNull = members.filter((m) => m.type !== "null");
  const nullable = nonNull.length < members.length;
  let base: Schema;
  if (nonNull.length === 1) base = nonNull[0];
  else if (nonNull.length === 2 && nonNull.every((m) => m.type === "integer" || m.type === "number")) base = { ...nonNull[0], ...nonNull[1], type: "number" };
  else base = { type: "json" };
  const field: Field = {
    kind: kindOf(base),
    nullable,
    title: resolved.title || base.title || "",
    help: resolved.description || base.description || "",
    default: resolved.default,
    enum: base.enum,
    minimum: base.minimum,
    maximum: base.maximum,
    exclusiveMinimum: base.exclusiveMinimum,
    exclusiveMaximum: base.exclusiveMaximum,
    minLength: base.minLength,
    maxLength: base.maxLength,
    minItems: base.minItems,
    maxItems: base.maxItems,
  };
  if (field.kind === "array") field.items = describe(base.items || {}, root);
  if (field.kind === "object") {
    field.properties = Object.fromEntries(Object.entries(base.properties as Schema).map(([key, sub]) => [key, describe(sub, root)]));
    field.required = base.required || [];
  }
  return field;
}

/** The bounds of a number field as a condition, e.g. "0 <= value <= 1" ("" when none). */
export function boundsText(field: Field): string {
  const lower = field.minimum !== undefined ? `${field.minimum} <= ` : field.exclusiveMinimum !== undefined ? `${field.exclusiveMinimum} < ` : "";
  const upper = field.maximum !== undefined ? ` <= ${field.maximum}` : field.exclusiveMaximum !== undefined ? ` < ${field.exclusiveMaximum}` : "";
  return lower || upper ? `${lower}value${upper}` : "";
}

function numberProblem(field: Field, value: number, label: string, got: string): string | null {
  if (field.kind === "integer" && !Number.isInteger(value)) return `${label} must be a whole number, got ${got}`;
  const below = (field.minimum !== undefined && value < field.minimum) || (field.exclusiveMinimum !== undefined && value <= field.exclusiveMinimum);
  const above = (field.maximum !== undefined && value > field.maximum) || (field.exclusiveMaximum !== undefined && value >= field.exclusiveMaximum);
  if (!below && !above) return null;
  if (field.minimum !== undefined && field.maximum !== undefined) return `${label} must be between ${field.minimum} and ${field.maximum}, got ${got}`;
  const rule = [
    field.minimum !== undefined && `at least ${field.minimum}`,
    field.exclusiveMinimum !== undefined && `greater than ${field.exclusiveMinimum}`,
    field.maximum !== undefined && `at most ${field.maximum}`,
    field.exclusiveMaximum !== undefined && `less than ${field.exclusiveMaximum}`,
  ].filter(Boolean).join(" and ");
  return `${label} must be ${rule}, got ${got}`;
}

/** A readable sentence saying why `value` does not fit `field`, or null when it fits. */
export function problem(field: Field, value: unknown, label: string): string | null {
  const got = JSON.stringify(value);
  if (value === null) return field.nullable ? null : `${label} cannot be empty`;
  switch (field.kind) {
    case "boolean":
      return typeof value === "boolean" ? null : `${label} must be true or false, got ${got}`;
    case "enum":
      return field.enum!.includes(value) ? null : `${label} must be one of ${field.enum!.join(", ")}, got ${got}`;
    case "integer":
    case "number":
      if (typeof value !== "number" || !Number.isFinite(value)) return `${label} must be a finite number, got ${got}`;
      return numberProblem(field, value, label, got);
    case "string":
      if (typeof value !== "string") return `${label} must be text, got ${got}`;
      if (field.minLength !== undefined && value.length < field.minLength) return `${label} needs at least ${field.minLength} characters`;
      if (field.maxLength !== undefined && value.length > field.maxLength) return `${label} allows at most ${field.maxLength} characters`;
      return null;
    case "array": {
      if (!Array.isArray(value)) return `${label} must be a list, got ${got}`;
      if (field.minItems !== undefined && value.length < field.minItems) return `${label} needs at least ${field.minItems} entries, got ${value.length}`;
      if (field.maxItems !== undefined && value.length > field.maxItems) return `${label} allows at most ${field.maxItems} entries, got ${value.length}`;
      for (const [index, item] of value.entries()) {
        const itemProblem = problem(field.items!, item, `${label} entry ${index + 1}`);
        if (itemProblem) return itemProblem;
      }
      return null;
    }
    case "object": {
      if (typeof value !== "object" || Array.isArray(value)) return `${label} must be an object, got ${got}`;
      const properties = field.properties!;
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        if (!(key in properties)) return `${label} has no key ${JSON.stringify(key)}; allowed: ${Object.keys(properties).join(", ")}`;
        const subProblem = problem(properties[key], item, `${label} ${properties[key].title || key}`);
        if (subProblem) return subProblem;
      }
      const missing = (field.required || []).find((key) => !(key in (value as object)));
      return missing ? `${label} needs the key ${missing}` : null;
    }
    default:
      return null;
  }
}

export type Parsed = { value: unknown } | { unset: true } | { error: string };

/**
 * Reads the whole text typed for a field: `{value}`, `{unset: true}` for an empty entry (the
 * card's default applies), or `{error}` when the text cannot be read at all. Never a prefix.
 */
export function parseText(field: Field, text: string, label: string): Parsed {
  const trimmed = text.trim();
  if (trimmed === "") return { unset: true };
  if (field.kind === "integer" || field.kind === "number") {
    const value = Number(trimmed);
    return Number.isNaN(value) || /^0x|^0b|^0o/i.test(trimmed) ? { error: `${label} must be a number, got "${trimmed}"` } : { value };
  }
  if (field.kind === "array") {
    const inner = trimmed.replace(/^[[(]/, "").replace(/[\])]$/, "");
    const items = inner.split(",").map((s) => s.trim());
    if (items.length > 1 && items[items.length - 1] === "") items.pop();
    const value: (number | null)[] = [];
    for (const item of items) {
      if (/^(null|none|\?)$/i.test(item)) value.push(null);
      else if (item !== "" && !Number.isNaN(Number(item))) value.push(Number(item));
      else return { error: `${label} must be a comma-separated list of numbers (null for unknown), got "${trimmed}"` };
    }
    return { value };
  }
  if (field.kind === "json" || field.kind === "object") {
    if (/^(null|none)$/i.test(trimmed)) return { value: null };
    try {
      return { value: JSON.parse(trimmed) };
    } catch {
      return { error: `${label} must be JSON, got "${trimmed}"` };
    }
  }
  return { value: text };
}

/** The text shown in a text box for a field's value. */
export function formatText(field: Field, value: unknown): string {
  if (value === undefined || value === null) return "";
  if (field.kind === "array" && Array.isArray(value)) return value.map((v) => (v === null ? "null" : String(v))).join(", ");
  if (field.kind === "json" || field.kind === "object") return JSON.stringify(value);
  return String(value);
}

/** A short text for a value on a compact node. */
export function shortText(value: unknown): string {
  if (value === null || value === undefined) return "none";
  if (Array.isArray(value)) return `(${value.map((v) => (v === null ? "?" : String(v))).join(", ")})`;
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export const sameValue = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Checks the text of a field as a whole: the value to commit (`undefined` = remove the param so
 * that the default applies) or the sentence saying why it cannot be committed.
 */
export function checkText(field: Field, text: string, label: string, required: boolean, fallback: unknown):
  { ok: true; value: unknown } | { ok: false; error: string } {
  const parsed = parseText(field, text, label);
  if ("error" in parsed) return { ok: false, error: parsed.error };
  if ("unset" in parsed) return required ? { ok: false, error: `${label} is required` } : { ok: true, value: undefined };
  const error = problem(field, parsed.value, label);
  if (error) return { ok: false, error };
  return { ok: true, value: sameValue(parsed.value, fallback) ? undefined : parsed.value };
}
