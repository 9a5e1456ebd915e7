// The form of the selected node, generated from its card's `params_schema`: numbers with their
// bounds, enums as selects, booleans as checkboxes, nullable fields, Object params as sub-forms.
// A value that does not fit the schema is flagged at once and is not put into the graph.

import { el } from "./dom.js";
import { boundsText, describe, formatText, parseText, problem } from "./schema.js";

const NULL_OPTION = "null";

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/**
 * One input control for a field. `onChange` receives `{value}`, `{unset: true}` (empty: the
 * default applies) or `{error}` (text that cannot be read).
 */
function control(field, label, current, testid, onChange) {
  const shown = current === undefined ? field.default : current;
  if (field.kind === "boolean" && !field.nullable) {
    const box = el("input", { type: "checkbox", "data-testid": testid });
    box.checked = Boolean(shown);
    box.addEventListener("change", () => onChange({ value: box.checked }));
    return box;
  }
  if (field.kind === "enum" || field.kind === "boolean") {
    const choices = field.kind === "enum" ? [...field.enum] : [true, false];
    if (field.nullable) choices.push(null);
    const select = el("select", { "data-testid": testid });
    for (const choice of choices) {
      const option = el("option", { value: JSON.stringify(choice), text: choice === null ? "none" : String(choice) });
      option.selected = same(choice, shown === undefined ? null : shown);
      select.append(option);
    }
    select.addEventListener("change", () => onChange({ value: JSON.parse(select.value) }));
    return select;
  }
  const multiline = field.kind === "json";
  const input = el(multiline ? "textarea" : "input", { "data-testid": testid, spellcheck: "false" });
  if (!multiline) input.type = "text";
  if (field.kind === "number" || field.kind === "integer") input.inputMode = "decimal";
  input.value = formatText(field, current);
  input.placeholder = field.default !== undefined && field.default !== null ? formatText(field, field.default) : field.nullable ? "none" : "";
  input.addEventListener("input", () => onChange(parseText(field, input.value, label)));
  return input;
}

export class Inspector {
  constructor(element, store, catalog) {
    this.element = element;
    this.store = store;
    this.catalog = catalog;
    this.nodeId = null;
    this.show(null);
  }

  /** Redraws the form unless the user is typing in it (so focus and caret are kept). */
  refresh() {
    if (!this.element.contains(document.activeElement)) this.show(this.nodeId);
  }

  show(nodeId) {
    this.nodeId = nodeId && this.store.nodes.has(nodeId) ? nodeId : null;
    if (!this.nodeId) {
      this.element.replaceChildren(el("p", { class: "muted", text: "Select a card on the canvas to edit its settings." }));
      return;
    }
    const node = this.store.nodes.get(this.nodeId);
    const card = this.catalog.cards.get(node.card);
    if (!card) {
      this.element.replaceChildren(el("p", { class: "field-error", text: `Node ${node.id} uses the card "${node.card}", which this server does not have.` }));
      return;
    }
    const root = card.params_schema;
    const about = el("details", { class: "card-help" }, el("summary", { text: "About this card" }), el("p", { text: card.help }));
    const parts = [el("h2", { text: card.title }), about, this.idField(node)];
    for (const port of card.inputs.filter((p) => p.literal)) {
      const schema = (root.properties || {})[port.id];
      if (schema) parts.push(this.paramField(node, port, describe(schema, root), root));
    }
    const remove = el("button", { type: "button", class: "danger", text: "Delete node" });
    remove.addEventListener("click", () => this.store.removeNode(node.id));
    parts.push(remove);
    this.element.replaceChildren(...parts);
    this.element.scrollTop = 0;
  }

  idField(node) {
    const input = el("input", { type: "text", value: node.id, "data-testid": "node-id", spellcheck: "false" });
    const message = el("p", { class: "field-error", role: "alert" });
    input.addEventListener("change", () => {
      const error = this.store.renameNode(this.nodeId, input.value.trim());
      message.textContent = error || "";
      input.setAttribute("aria-invalid", error ? "true" : "false");
      if (!error) this.nodeId = input.value.trim();
    });
    return el("label", { class: "field" }, el("span", { class: "field-label", text: "Node id" }), input, message);
  }

  paramField(node, port, field, root) {
    const label = port.text;
    const wire = this.store.edgeInto(node.id, port.id);
    const current = node.params[port.id];
    const message = el("p", { class: "field-error", role: "alert", text: (this.store.fieldErrors.get(node.id) || new Map()).get(port.id) || "" });
    const apply = (result, input) => {
      let error = result.error;
      if (!error && result.unset && port.required) error = `${label} is required`;
      if (!error && !result.unset) error = problem(field, result.value, label);
      message.textContent = error || "";
      if (input) input.setAttribute("aria-invalid", error ? "true" : "false");
      if (error) {
        this.store.setFieldError(node.id, port.id, error);
      } else {
        const value = result.unset || same(result.value, port.default) ? undefined : result.value;
        this.store.setParam(node.id, port.id, value);
      }
    };
    let input;
    if (field.kind === "object") {
      input = this.objectControl(field, label, current, port.id, apply);
    } else {
      input = control(field, label, current, `param-${port.id}`, (result) => apply(result, input));
    }
    if (message.textContent) input.setAttribute("aria-invalid", "true");
    const help = el("small", { class: "muted", text: `${port.type}${boundsText(field) ? `, ${boundsText(field)}` : ""}. ${port.help}` });
    const wrapper = el(field.kind === "object" ? "div" : "label", { class: `field${wire ? " wired" : ""}` },
      el("span", { class: `field-label${port.required ? " required" : ""}`, text: label }), input);
    if (wire) {
      for (const part of input.querySelectorAll ? [input, ...input.querySelectorAll("input, select, textarea")] : [input]) part.disabled = true;
      wrapper.append(el("small", { class: "wired-note", text: `Set by the wire from ${wire.source}.${wire.source_port}.` }));
    }
    wrapper.append(message, help);
    return wrapper;
  }

  /** An Object param as a small sub-form (with an on/off switch when the param may be null). */
  objectControl(field, label, current, portId, apply) {
    const box = el("fieldset", { class: "sub-form", "data-testid": `param-${portId}` }, el("legend", { text: label }));
    const value = current && typeof current === "object" ? { ...current } : {};
    let enabled = current !== undefined && current !== null;
    const toggle = el("input", { type: "checkbox", "data-testid": `param-${portId}-enabled` });
    toggle.checked = enabled;
    const subs = [];
    const emit = () => {
      if (!enabled) apply(field.nullable ? { unset: true } : { error: `${label} must be set` }, box);
      else apply({ value: { ...value } }, box);
    };
    if (field.nullable) {
      box.append(el("label", { class: "inline" }, toggle, el("span", { text: ` Set ${label}` })));
      toggle.addEventListener("change", () => {
        enabled = toggle.checked;
        subs.forEach((s) => { s.disabled = !enabled; });
        emit();
      });
    } else {
      enabled = true;
    }
    for (const [key, sub] of Object.entries(field.properties)) {
      const subLabel = `${label} ${sub.title || key}`;
      const input = control(sub, subLabel, value[key], `param-${portId}.${key}`, (result) => {
        if (result.error) {
          apply(result, box);
          return;
        }
        if (result.unset) delete value[key];
        else value[key] = result.value;
        emit();
      });
      input.disabled = !enabled;
      subs.push(input);
      box.append(el("label", { class: "field" }, el("span", { class: "field-label", text: sub.title || key }), input,
        el("small", { class: "muted", text: sub.help })));
    }
    return box;
  }
}

