/** Shared by the tests of the elementwise fusions (fuse-matmul-epilogue, fuse-residual-layer-norm,
 *  fuse-elementwise): IR text in → IR text out, the reference models, and random small graphs of
 *  elementwise ops, maps, matmuls (with and without epilogues) and layer norms (with and without
 *  prologues), with random fan-out, for fast-check properties. */
import fc from "fast-check";
import { expect } from "vitest";
import { buildGraph } from "../../../compiler/dsl/model.ts";
import { parseExpr, type Expr } from "../../../compiler/ir/expr.ts";
import {
  addNode,
  newNodeStore,
  nodeData,
  topoOrder,
  type Graph,
  type OpNode,
} from "../../../compiler/ir/graph.ts";
import { inferType } from "../../../compiler/ir/infer.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { printGraph } from "../../../compiler/ir/print.ts";
import type { TensorType } from "../../../compiler/ir/shape.ts";
import { verify } from "../../../compiler/ir/verify.ts";
import type { Pass, PassOutput } from "../../../compiler/passes/pass.ts";
import { runPipeline } from "../../../compiler/passes/pipeline.ts";
import gpt2 from "../../../models/gpt2.ts";
import seq2seq from "../../../models/seq2seq.ts";
import { expectEquivalent } from "../../helpers/feeds.ts";

export const GPT2_SMALL = { vocab_size: 97, n_positions: 16, n_embd: 24, n_layer: 2, n_head: 3 };
export const SEQ2SEQ_SMALL = {
  num_encoder_layers: 2,
  num_decoder_layers: 2,
  emb_size: 24,
  nhead: 3,
  src_vocab_size: 41,
  tgt_vocab_size: 37,
  dim_feedforward: 40,
};
export const BINDINGS = new Map([
  ["T", 5],
  ["S", 7],
]);
export const gpt2Small = (): Graph => buildGraph(gpt2, GPT2_SMALL);
export const seq2seqSmall = (): Graph => buildGraph(seq2seq, SEQ2SEQ_SMALL);
export const MODELS: readonly [string, () => Graph][] = [
  ["gpt2", gpt2Small],
  ["seq2seq", seq2seqSmall],
];

/** Runs the pass on IR text, checks the printed result against `want` (printed too, so its column
 *  alignment does not matter) and that the input graph is untouched. */
export function expectRewrite(pass: Pass, input: string, want: string): PassOutput {
  const g = parseGraph(input);
  const before = printGraph(g);
  const out = pass.run(g);
  verify(out.graph, pass.name);
  expect(printGraph(out.graph)).toBe(printGraph(parseGraph(want)));
  expect(printGraph(g)).toBe(before);
  return out;
}

export function expectNoRewrite(pass: Pass, input: string): PassOutput {
  const out = expectRewrite(pass, input, input);
  expect(out.rewrites).toBe(0);
  return out;
}

/** Runs the passes (verifying after each), checks equivalence with the input and that a second
 *  run of each pass changes nothing. */
export function checkPasses(passes: readonly Pass[], g: Graph, bindings = BINDINGS): Graph {
  const { graph } = runPipeline(g, passes);
  expectEquivalent(graph, g, bindings);
  for (const p of passes) {
    const again = p.run(graph);
    expect(again.rewrites, p.name).toBe(0);
    expect(printGraph(again.graph), p.name).toBe(printGraph(graph));
  }
  return graph;
}

/** How many nodes of each op a graph has. */
export function opCounts(g: Graph): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of topoOrder(g)) {
    const op = nodeData(g, k).op;
    out[op] = (out[op] ?? 0) + 1;
  }
  return out;
}

// ---- random graphs --------------------------------------------------------------------------

export interface Step {
  readonly op: number;
  readonly a: number;
  readonly b: number;
  readonly v: number;
}

const KINDS = 11;

export const steps: fc.Arbitrary<Step[]> = fc.array(
  fc.record({ op: fc.nat(KINDS - 1), a: fc.nat(63), b: fc.nat(63), v: fc.nat(63) }),
  { minLength: 1, maxLength: 20 },
);

const BINARY = ["add", "sub", "mul", "div"] as const;
const UNARY = ["neg", "exp", "tanh", "relu", "gelu", "gelu_tanh"] as const;
const MAP_EXPRS = ["add(mul($0, $1), $0)", "tanh(sub($0, $1))", "mul($1, 0.5)", "div($0, exp($1))"];
const EPILOGUES = ["add(acc, $0)", "gelu_tanh(add(acc, $0))", "mul(acc, $0)"];

function expr(text: string): Expr {
  const e = parseExpr(text);
  if (typeof e === "string") throw new Error(e);
  return e;
}

/** A small graph from a random op sequence. Sources: x, y f32[T,6], z f32[T,1]; params w, w2
 *  [6,6], g.weight, bias [6], big [2,1,6]; rank-0 consts. Ops: elementwise (broadcasting), maps,
 *  matmuls (either layout), matmul_epilogues, layer norms and layer_norm_maps, each reading random
 *  earlier values, so values get several users; some values are also outputs. Steps whose
 *  operands do not fit are skipped. */
export function randomGraph(seq: readonly Step[]): Graph {
  const nodes = newNodeStore();
  const f32 = (shape: readonly (number | string)[]): TensorType => ({ dtype: "f32", shape });
  const inputs = ["x", "y", "z"];
  addNode(nodes, "x", { op: "input", attrs: { name: "x" }, type: f32(["T", 6]) }, []);
  addNode(nodes, "y", { op: "input", attrs: { name: "y" }, type: f32(["T", 6]) }, []);
  addNode(nodes, "z", { op: "input", attrs: { name: "z" }, type: f32(["T", 1]) }, []);
  const params: [string, number[]][] = [
    ["w", [6, 6]],
    ["w2", [6, 6]],
    ["g.weight", [6]],
    ["bias", [6]],
    ["big", [2, 1, 6]],
  ];
  for (const [name, shape] of params)
    addNode(nodes, name, { op: "param", attrs: { name }, type: f32(shape) }, []);
  addNode(nodes, "c", { op: "const", attrs: { value: 0.5 }, type: f32([]) }, []);
  addNode(nodes, "c2", { op: "const", attrs: { value: -2 }, type: f32([]) }, []);
  const pool = ["x", "y", "z", "bias", "big", "c"];
  const made: string[] = [];
  const add = (node: OpNode, ins: string[]): void => {
    const t = inferType(
      node.op,
      node.attrs,
      ins.map((k) => nodes.getNodeAttributes(k).type),
    );
    if (typeof t === "string") return;
    const key = `v${made.length}`;
    addNode(nodes, key, { ...node, type: t }, ins);
    pool.push(key);
    made.push(key);
  };
  // mostly one of the last few values (chains), sometimes any earlier one (fan-out)
  const pick = (i: number): string =>
    i < 40 ? pool[pool.length - 1 - (i % Math.min(3, pool.length))] : pool[i % pool.length];
  for (const s of seq) {
    const a = pick(s.a);
    const b = pick(s.b);
    const w = s.v % 2 === 0 ? "w" : "w2";
    switch (s.op) {
      case 0:
      case 1: {
        const ins = [a, s.op === 1 ? "c2" : b];
        add({ op: BINARY[s.v % 4], attrs: {} }, Math.floor(s.v / 4) % 2 ? ins.reverse() : ins);
        break;
      }
      case 2:
        add({ op: UNARY[s.v % UNARY.length], attrs: {} }, [a]);
        break;
      case 3:
        add({ op: "map", attrs: { expr: expr(MAP_EXPRS[s.v % MAP_EXPRS.length]) } }, [a, b]);
        break;
      case 4:
      case 5:
        add({ op: "matmul", attrs: { transposeB: s.b % 2 === 0 } }, [a, w]);
        break;
      case 6:
        add(
          {
            op: "matmul_epilogue",
            attrs: { transposeB: s.v % 3 === 0, expr: expr(EPILOGUES[s.v % EPILOGUES.length]) },
          },
          [a, w, b],
        );
        break;
      case 7:
        add({ op: "layer_norm", attrs: { eps: 1e-5 } }, [a, "g.weight", "bias"]);
        break;
      case 8:
        add({ op: "layer_norm_map", attrs: { eps: 1e-5, expr: expr("sub($0, $1)") } }, [
          "g.weight",
          "bias",
          a,
          b,
        ]);
        break;
      case 9: // the same value twice: a user reading it in two slots
        add({ op: BINARY[s.v % 4], attrs: {} }, [a, a]);
        break;
      case 10: {
        // a matmul and a binary op on it, the other operand on either side
        const before = made.length;
        add({ op: "matmul", attrs: { transposeB: s.b % 2 === 0 } }, [a, w]);
        if (made.length === before) break;
        const ins = [made[made.length - 1], s.b % 3 === 0 ? "bias" : b];
        add({ op: BINARY[s.v % 4], attrs: {} }, Math.floor(s.v / 4) % 2 ? ins.reverse() : ins);
        break;
      }
    }
  }
  const unused = made.filter((k) => nodes.outDegree(k) === 0);
  const extra = made.length > 0 ? made[seq[0].v % made.length] : "x";
  const outputs = [...new Set([...unused, extra])];
  return verify({ name: "random", nodes, inputs, outputs, bounds: new Map() });
}

/** Property: on random graphs the passes verify, stay equivalent and are idempotent. */
export function expectPropertyHolds(passes: readonly Pass[], numRuns = 250): void {
  fc.assert(
    fc.property(steps, (seq) => {
      checkPasses(passes, randomGraph(seq), new Map([["T", 3]]));
    }),
    { numRuns, seed: 7 },
  );
}
