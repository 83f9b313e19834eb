/** Shared by the tests of fold-constants, simplify, cse and recognize-layer-norm: IR text in → IR
 *  text out, the reference models at their small configs, idempotence, and random small graphs
 *  built through the DSL from random op sequences (for fast-check properties). */
import fc from "fast-check";
import { expect } from "vitest";
import type { ModelBuilder, Tensor } from "../../../compiler/dsl/builder.ts";
import { buildGraph } from "../../../compiler/dsl/model.ts";
import * as p from "../../../compiler/dsl/primitives.ts";
import { KilnError } from "../../../compiler/errors.ts";
import type { Graph } from "../../../compiler/ir/graph.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { printGraph } from "../../../compiler/ir/print.ts";
import { verify } from "../../../compiler/ir/verify.ts";
import type { Pass, PassOutput } from "../../../compiler/passes/pass.ts";
import gpt2 from "../../../models/gpt2.ts";
import seq2seq from "../../../models/seq2seq.ts";
import { expectEquivalent } from "../../helpers/feeds.ts";
import { build } from "../util.ts";

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

export const REFERENCE_MODELS: readonly [string, () => Graph][] = [
  ["gpt2", () => buildGraph(gpt2, GPT2_SMALL)],
  ["seq2seq", () => buildGraph(seq2seq, SEQ2SEQ_SMALL)],
];

/** Runs the pass on IR text and checks the printed result against `want` (also IR text; both
 *  are printed, so the column alignment of `want` does not matter). Returns the pass output. */
export function expectRewrite(pass: Pass, input: string, want: string): PassOutput {
  const g = parseGraph(input);
  const out = pass.run(g);
  verify(out.graph, pass.name);
  expect(printGraph(out.graph)).toBe(printGraph(parseGraph(want)));
  expect(printGraph(g)).toBe(printGraph(parseGraph(input))); // the input graph is untouched
  return out;
}

/** The pass leaves the IR unchanged and reports no rewrite. */
export function expectNoRewrite(pass: Pass, input: string): PassOutput {
  const out = expectRewrite(pass, input, input);
  expect(out.rewrites).toBe(0);
  return out;
}

/** A second run changes nothing: no rewrites, the same printed graph. */
export function expectIdempotent(pass: Pass, once: Graph): void {
  const twice = pass.run(once);
  expect(twice.rewrites).toBe(0);
  expect(printGraph(twice.graph)).toBe(printGraph(once));
}

/** Runs the pass, verifies, and checks equivalence and idempotence. */
export function checkPass(pass: Pass, g: Graph, bindings = BINDINGS): PassOutput {
  const out = pass.run(g);
  verify(out.graph, pass.name);
  expectEquivalent(out.graph, g, bindings);
  expectIdempotent(pass, out.graph);
  return out;
}

// ---- random graphs --------------------------------------------------------------------------

export interface Step {
  readonly op: number;
  readonly a: number;
  readonly b: number;
  readonly v: number;
}

const STEP_KINDS = 15;

export const steps: fc.Arbitrary<Step[]> = fc.array(
  fc.record({
    op: fc.nat(STEP_KINDS - 1),
    a: fc.nat(63),
    b: fc.nat(63),
    v: fc.nat(63),
  }),
  { minLength: 1, maxLength: 14 },
);

const CONSTS = [0, 1, 2, -1, 0.5, 3, 1e-5];

function perms(n: number): number[][] {
  if (n === 0) return [[]];
  return perms(n - 1).flatMap((q) =>
    Array.from({ length: n }, (_, i) => [...q.slice(0, i), n - 1, ...q.slice(i)]),
  );
}

/** Reshape targets for t: its own shape, the last dim split in two, the last two dims merged. */
function reshapes(t: Tensor): (readonly (number | string)[])[] {
  const s = t.type.shape;
  const out: (readonly (number | string)[])[] = [s];
  const last = s[s.length - 1];
  if (typeof last === "number" && last % 2 === 0 && last > 2)
    out.push([...s.slice(0, -1), 2, last / 2]);
  const prev = s[s.length - 2];
  if (typeof last === "number" && typeof prev === "number")
    out.push([...s.slice(0, -2), prev * last]);
  return out;
}

/** A layer norm written out with the DSL primitives (variant 0: div by sqrt, 1: mul by rsqrt,
 *  operands swapped where the ops commute). */
export function handLayerNorm(
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  eps: number,
  variant = 0,
  tap?: (d: Tensor) => void,
): Tensor {
  const mean = p.mean(x, -1);
  const d = p.sub(x, mean);
  tap?.(d);
  const v = p.mean(p.mul(d, d), -1);
  const n = variant % 2 === 0 ? p.div(d, p.sqrt(p.add(v, eps))) : p.mul(p.rsqrt(p.add(eps, v)), d);
  return variant % 2 === 0 ? p.add(p.mul(n, gamma), beta) : p.add(beta, p.mul(gamma, n));
}

/** A small graph from a random op sequence: consts, elementwise ops, transposes, reshapes,
 *  slices, adds of zero and muls by one, double negations, reductions, a matmul, hand-written
 *  layer norms (some with x − mean used again), constant chains, and repeats of earlier steps (duplicated subexpressions). Steps whose operands
 *  do not fit are skipped. Inputs: x f32[T,4]; params w f32[4], u f32[2,1,4]. */
export function randomGraph(seq: readonly Step[]): Graph {
  return build((m: ModelBuilder) => {
    const x = m.input("x", "f32", ["T", 4]);
    const pool: Tensor[] = [x, m.param("w", [4]), m.param("u", [2, 1, 4])];
    const made: (() => Tensor)[] = [];
    const pick = (i: number) => pool[i % pool.length];
    seq.forEach((s, i) => {
      const a = pick(s.a);
      const b = pick(s.b);
      const c = CONSTS[s.v % CONSTS.length];
      const rank = a.type.shape.length;
      const last = a.type.shape[rank - 1];
      let make: (() => Tensor) | undefined;
      switch (s.op) {
        case 0:
          make = () => m.scalar(c, x);
          break;
        case 1:
          make = () => [p.add, p.sub, p.mul, p.div][s.v % 4](a, b);
          break;
        case 2:
          make = () => [p.neg, p.exp, p.sqrt, p.rsqrt, p.tanh, p.relu][s.v % 6](a);
          break;
        case 3: {
          const ps = perms(rank);
          make = () => p.transpose(a, ps[s.v % ps.length]);
          break;
        }
        case 4: {
          const rs = reshapes(a);
          make = () => p.reshape(a, rs[s.v % rs.length]);
          break;
        }
        case 5: {
          const axis = s.v % Math.max(rank, 1);
          const d = a.type.shape[axis];
          if (typeof d === "number" && d > 0)
            make = () => (s.b % 2 === 0 ? p.slice(a, axis, 0, d) : p.slice(a, axis, 1, d - 1));
          break;
        }
        case 6: // adds of zero, muls by one, either side
          make = () =>
            [
              () => p.add(a, 0),
              () => p.add(0, a),
              () => p.sub(a, 0),
              () => p.mul(a, 1),
              () => p.mul(1, a),
              () => p.div(a, 1),
            ][s.v % 6]();
          break;
        case 7: // a 1 that broadcasts to a bigger shape: x × 1 is not x there
          make = () =>
            p.mul(
              a,
              m.node("const", { value: 1 }, [], "ones", { dtype: "f32", shape: [2, 1, 1, 1] }),
            );
          break;
        case 8:
          make = () => p.neg(p.neg(a));
          break;
        case 9:
          make = () => (s.v % 2 === 0 ? p.mean(a, -1) : p.softmax(a, -1));
          break;
        case 10:
          if (typeof last === "number" && last > 0)
            make = () => p.matmul(a, m.param(`mm${i}`, [last, 3]));
          break;
        case 11:
          if (typeof last === "number" && last > 1)
            make = () =>
              handLayerNorm(
                a,
                m.param(`g${i}.weight`, [last]),
                m.param(`b${i}`, [last]),
                1e-5,
                s.v,
                // sometimes x − mean escapes, to be used again (a second user: no fusion)
                s.b % 3 === 0 ? (d) => void pool.push(d) : undefined,
              );
          break;
        case 12:
          if (made.length > 0) make = made[s.a % made.length];
          break;
        case 13: // constants combined: a chain that folds
          make = () =>
            [p.sqrt, p.rsqrt, p.neg, p.exp][s.b % 4](
              [p.add, p.sub, p.mul, p.div][s.v % 4](
                m.scalar(c, x),
                m.scalar(CONSTS[s.b % CONSTS.length], x),
              ),
            );
          break;
        case 14: {
          const ps = perms(rank);
          make = () => p.transpose(p.transpose(a, ps[s.v % ps.length]), ps[s.b % ps.length]);
          break;
        }
      }
      if (!make) return;
      try {
        pool.push(make());
        made.push(make);
      } catch (e) {
        if (!(e instanceof KilnError)) throw e;
      }
    });
    const outs = [pool[pool.length - 1]];
    const other = pick(seq[0].a + 3);
    if (other !== outs[0]) outs.push(other);
    return outs;
  });
}

/** Property: on random small graphs the pass verifies, stays equivalent and is idempotent. */
export function expectPropertyHolds(pass: Pass, numRuns = 150): void {
  fc.assert(
    fc.property(steps, (seq) => {
      checkPass(pass, randomGraph(seq), new Map([["T", 3]]));
    }),
    { numRuns, seed: 42 },
  );
}
