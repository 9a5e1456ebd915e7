"""The graph format of CONTRACT §4 as Pydantic models."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Position(BaseModel):
    # Strict: a position is numbers, as the schema says (lax mode would take "12" or true too).
    model_config = ConfigDict(extra="allow", strict=True)
    x: float = 0.0
    y: float = 0.0


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique id matching `[A-Za-z0-9_.-]{1,64}`; also the default layer name.")
    card: str = Field(description="Id of the card this node instantiates.")
    params: dict[str, Any] = Field(default_factory=dict, description="Values of the card's literal inputs.")
    position: Position | None = Field(None, description="Where the editor draws the node; ignored by the executor.")


class Edge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="Id of the node the edge leaves.")
    source_port: str = Field(description="Output port of the source node.")
    target: str = Field(description="Id of the node the edge enters.")
    target_port: str = Field(description="Socket input port of the target node.")


class Graph(BaseModel):
    """Nodes (card instances with params) and edges (from an output port to a socket input)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    nodes: list[Node] = Field(description="The card instances.")
    edges: list[Edge] = Field(default_factory=list, description="Connections from output ports to socket inputs.")
