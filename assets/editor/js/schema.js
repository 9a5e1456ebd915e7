// Turns a card's `params_schema` (JSON Schema as Pydantic emits it) into field descriptions the
// form renders, and checks values against them before anything is sent to the server.

function resolveRef(schema, root) {
  let current = schema;
  while (current && current.$ref) {
    const path = current.$ref.replace(/^#\//, "").split("/");
    current = path.reduce((node, key) => node && node[key], root);
  }
  return current || {};
}

function kindOf(schema) {
  if (Array.isArray(schema.enum)) return "enum";
  switch (schema.type) {
    case "boolean": return "boolean";
    case "integer": return "integer";
    case "number": return "number";
    case "string": return "string";
    case "array": return "array";
    case "object": return schema.properties ? "object" : "json";
    default: return "json";
  }
}

/**
 * A field description: `kind` (boolean, integer, number, string, enum, array, object, json),
 * `nullable`, the bounds and lengths of the schema, `items` for arrays and `properties` for
 * objects (each itself a field description).
 */
export function describe(schema, root = schema) {
  const resolved = resolveRef(schema, root);
  const members = (resolved.anyOf || resolved.oneOf || [resolved]).map((m) => resolveRef(m, root));
  const nonNull = members.filter((m) => m.type !== "null");
  const nullable = nonNull.length < members.length;
  let base;
  if (nonNull.length === 1) {
    base = nonNull[0];
  } else if (nonNull.length === 2 && nonNull.every((m) => m.type === "integer" || m.type === "number")) {
    base = { ...nonNull[0], ...nonNull[1], type: "number" };
  } else {
    base = { type: "json" };
  }
  const field = {
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
    field.properties = Object.fromEntries(
      Object.entries(base.properties).map(([key, sub]) => [key, describe(sub, root)]));
    field.required = base.required || [];
  }
  return field;
}

/** The bounds of a number field as a condition on `value`, e.g. "0 <= value <= 1" ("" when none). */
export function boundsText(field) {
  const lower = field.minimum !== undefined ? `${field.minimum} <= ` : field.exclusiveMinimum !== undefined ? `${field.exclusiveMinimum} < ` : "";
  const upper = field.maximum !== undefined ? ` <= ${field.maximum}` : field.exclusiveMaximum !== undefined ? ` < ${field.exclusiveMaximum}` : "";
  return lower || upper ? `${lower}value${upper}` : "";
}

/** A readable sentence saying why `value` does not fit `field`, or null when it fits. */
export function problem(field, value, label) {
  const got = JSON.stringify(value);
  if (value === null) return field.nullable ? null : `${label} cannot be empty`;
  switch (field.kind) {
    case "boolean":
      return typeof value === "boolean" ? null : `${label} must be true or false, got ${got}`;
    case "enum":
      return field.enum.includes(value) ? null : `${label} must be one of ${field.enum.join(", ")}, got ${got}`;
    case "integer":
    case "number": {
      if (typeof value !== "number" || !Number.isFinite(value)) return `${label} must be a finite number, got ${got}`;
      if (field.kind === "integer" && !Number.isInteger(value)) return `${label} must be a whole number, got ${got}`;
      const below = (field.minimum !== undefined && value < field.minimum) || (field.exclusiveMinimum !== undefined && value <= field.exclusiveMinimum);
      const above = (field.maximum !== undefined && value > field.maximum) || (field.exclusiveMaximum !== undefined && value >= field.exclusiveMaximum);
      if (below || above) {
        if (field.minimum !== undefined && field.maximum !== undefined) return `${label} must be between ${field.minimum} and ${field.maximum}, got ${got}`;
        const rule = [
          field.minimum !== undefined && `at least ${field.minimum}`,
          field.exclusiveMinimum !== undefined && `greater than ${field.exclusiveMinimum}`,
          field.maximum !== undefined && `at most ${field.maximum}`,
          field.exclusiveMaximum !== undefined && `less than ${field.exclusiveMaximum}`,
        ].filter(Boolean).join(" and ");
        return `${label} must be ${rule}, got ${got}`;
      }
      return null;
    }
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
        const itemProblem = problem(field.items, item, `${label} entry ${index + 1}`);
        if (itemProblem) return itemProblem;
      }
      return null;
    }
    case "object": {
      if (typeof value !== "object" || Array.isArray(value)) return `${label} must be an object, got ${got}`;
      for (const key of Object.keys(value)) {
        if (!(key in field.properties)) return `${label} has no key ${JSON.stringify(key)}; allowed: ${Object.keys(field.properties).join(", ")}`;
        const sub = field.properties[key];
        const subProblem = problem(sub, value[key], `${label} ${sub.title || key}`);
        if (subProblem) return subProblem;
      }
      const missing = field.required.find((key) => !(key in value));
      return missing ? `${label} needs the key ${missing}` : null;
    }
    default:
      return null;
  }
}

/**
 * Reads the text typed for a scalar or list field. Returns `{value}`, `{unset: true}` for an
 * empty entry (the card's default applies), or `{error}` when the text cannot be read at all.
 */
export function parseText(field, text, label) {
  const trimmed = text.trim();
  if (trimmed === "") return { unset: true };
  if (field.kind === "integer" || field.kind === "number") {
    const value = Number(trimmed);
    return Number.isNaN(value) ? { error: `${label} must be a number, got "${trimmed}"` } : { value };
  }
  if (field.kind === "array") {
    const inner = trimmed.replace(/^[[(]/, "").replace(/[\])]$/, "");
    const items = inner.split(",").map((s) => s.trim()).filter((s, i, all) => s !== "" || i < all.length - 1);
    const value = [];
    for (const item of items) {
      if (/^(null|none|\?)$/i.test(item)) value.push(null);
      else if (item !== "" && !Number.isNaN(Number(item))) value.push(Number(item));
      else return { error: `${label} must be a comma-separated list of numbers (null for unknown), got "${trimmed}"` };
    }
    return { value };
  }
  if (field.kind === "json") {
    try {
      return { value: JSON.parse(trimmed) };
    } catch {
      return { error: `${label} must be JSON, got "${trimmed}"` };
    }
  }
  return { value: text };
}

/** The value shown in a text box for a field's current value. */
export function formatText(field, value) {
  if (value === undefined || value === null) return "";
  if (field.kind === "array") return value.map((v) => (v === null ? "null" : String(v))).join(", ");
  if (field.kind === "json") return JSON.stringify(value);
  return String(value);
}
