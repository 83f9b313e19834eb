/** A pass takes a graph and returns a graph, with a count of the rewrites it made and, for a
 *  fusion, the candidates it saw and refused, each with the reason (the viewer shows them). */
import type { Graph } from "../ir/graph.ts";

export interface NotFused {
  /** The fusion that was refused, by pass name (`fuse-attention`). */
  readonly pattern: string;
  /** The node where the candidate starts: `%key (models/gpt2.ts:42)`. */
  readonly at: string;
  readonly reason: string;
}

export interface PassOutput {
  readonly graph: Graph;
  readonly rewrites: number;
  readonly notFused: readonly NotFused[];
}

export interface Pass {
  readonly name: string;
  readonly run: (g: Graph) => PassOutput;
}
