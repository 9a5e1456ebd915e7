// What follows every change of the graph: live validation (debounced; only the latest answer
// counts), the autosave in local storage, and clearing a finished run's results when the graph
// they came from has changed.

import { api } from "./api";
import { STORAGE_KEY, structureKey, useEditor } from "./store";

const VALIDATE_DELAY_MS = 250;
const SAVE_DELAY_MS = 150;

export function startWatchers() {
  let structure = "";
  let validateTimer = 0;
  let saveTimer = 0;
  let sequence = 0;

  async function validate() {
    const mine = ++sequence;
    const state = useEditor.getState();
    const graph = state.graph();
    if (!graph.nodes.length) {
      useEditor.setState({ validation: { valid: true, errors: [], shapes: {}, pending: false, failure: null } });
      return;
    }
    try {
      const result = await api.validate(graph);
      if (mine === sequence) useEditor.setState({ validation: { ...result, pending: false, failure: null } });
    } catch (error) {
      if (mine !== sequence) return;
      const body = (error as { error?: { errors?: [] } }).error;
      useEditor.setState({
        validation: { valid: false, errors: body?.errors || [], shapes: {}, pending: false, failure: `Validation request failed: ${(error as Error).message}` },
      });
    }
  }

  function save() {
    window.clearTimeout(saveTimer);
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(useEditor.getState().graph()));
    } catch {
      // storage full or disabled: the graph is simply not kept
    }
  }
  // A reload or a closed tab does not wait for the debounce.
  window.addEventListener("pagehide", save);

  function onChange() {
    const state = useEditor.getState();
    window.clearTimeout(saveTimer);
    saveTimer = window.setTimeout(save, SAVE_DELAY_MS);
    const key = structureKey(state);
    if (key === structure) return;
    structure = key;
    if (state.current && state.current.structure !== key) state.clearRun();
    useEditor.setState({ validation: { ...state.validation, pending: true } });
    window.clearTimeout(validateTimer);
    validateTimer = window.setTimeout(validate, VALIDATE_DELAY_MS);
  }

  let last = { nodes: useEditor.getState().nodes, edges: useEditor.getState().edges };
  useEditor.subscribe((state) => {
    if (state.nodes === last.nodes && state.edges === last.edges) return;
    last = { nodes: state.nodes, edges: state.edges };
    onChange();
  });
  onChange();
}
