// The canvas: React Flow does the zoom, pan, fit-view, minimap, selection (click, Shift/Ctrl
// click, Shift drag box), dragging, wiring by handles and deletion by key; the store decides
// what an edit means (refused wires, replaced wires, one undo step per gesture).

import {
  Background, Controls, MiniMap, ReactFlow, useReactFlow,
  type Connection, type Edge, type Node, type OnDelete,
} from "@xyflow/react";
import { useCallback, useEffect, useState } from "react";
import { CardNode } from "./CardNode";
import { useEditor, type CardNode as CardNodeType, type Wire } from "./store";
import { WireEdge } from "./WireEdge";

const nodeTypes = { card: CardNode };
const edgeTypes = { wire: WireEdge };
const DELETE_KEYS = ["Delete", "Backspace"];
const MULTI_KEYS = ["Shift", "Meta", "Control"];
const FIT = { padding: 0.12, maxZoom: 1.2 };

export function Canvas() {
  const nodes = useEditor((s) => s.nodes);
  const edges = useEditor((s) => s.edges);
  const focus = useEditor((s) => s.focus);
  const types = useEditor((s) => s.catalog.types);
  const flow = useReactFlow<CardNodeType, Wire>();
  // Fit a restored graph once; an empty canvas keeps its view while the first cards arrive.
  const [fitOnStart] = useState(() => useEditor.getState().nodes.length > 0);

  const onConnect = useCallback((c: Connection) => {
    useEditor.getState().connect(c.source, c.sourceHandle || "", c.target, c.targetHandle || "");
  }, []);
  const onDelete: OnDelete<CardNodeType, Wire> = useCallback(({ nodes: gone, edges: cut }) => {
    useEditor.getState().remove(gone.map((n) => n.id), cut.map((e) => e.id));
  }, []);

  useEffect(() => {
    if (!focus) return;
    const node = flow.getNode(focus.node);
    if (!node) return;
    const width = node.measured?.width ?? 200;
    const height = node.measured?.height ?? 100;
    void flow.setCenter(node.position.x + width / 2, node.position.y + height / 2, { zoom: Math.max(flow.getZoom(), 1), duration: 250 });
  }, [focus, flow]);

  const minimapColor = useCallback((node: Node) => {
    const card = useEditor.getState().catalog.cards.get((node as CardNodeType).data.card);
    const type = card?.outputs[card.outputs.length - 1]?.type || card?.inputs[0]?.type;
    return (type && types.get(type)?.color) || "#9aa3b5";
  }, [types]);

  return (
    <section className="canvas" data-testid="canvas" aria-label="Canvas: cards and wires">
      <ReactFlow<CardNodeType, Wire>
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        edgeTypes={edgeTypes}
        onNodesChange={useEditor.getState().onNodesChange}
        onEdgesChange={useEditor.getState().onEdgesChange}
        onNodeDragStart={() => useEditor.getState().beginMove()}
        onConnect={onConnect}
        onDelete={onDelete}
        isValidConnection={(c: Connection | Edge) => c.source !== c.target}
        deleteKeyCode={DELETE_KEYS}
        multiSelectionKeyCode={MULTI_KEYS}
        selectionKeyCode="Shift"
        minZoom={0.1}
        maxZoom={2.5}
        fitView={fitOnStart}
        fitViewOptions={FIT}
        proOptions={{ hideAttribution: true }}
        elevateNodesOnSelect
        nodeDragThreshold={3}
      >
        <Background gap={20} size={1} />
        <Controls fitViewOptions={FIT} showInteractive={false} />
        <MiniMap pannable zoomable nodeColor={minimapColor} ariaLabel="Overview of the graph" />
      </ReactFlow>
    </section>
  );
}

export { FIT };
