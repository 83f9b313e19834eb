/** Text IR: golden files of both reference models, print → parse → print as the identity, the
 *  parser's errors (each naming its line), string escaping, and a property test over random
 *  graphs built through the DSL.
 *
 *  The golden files test/golden/*.ir are the printed IR of each model at a small config. When a
 *  change to the printer or a model is intended, regenerate them with
 *    UPDATE_GOLDEN=1 npx vitest run test/compiler/ir/text.test.ts
 *  and review the diff like code. */
import fc from "fast-check";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ModelBuilder, type Tensor } from "../../../compiler/dsl/builder.ts";
import { buildGraph } from "../../../compiler/dsl/model.ts";
import * as p from "../../../compiler/dsl/primitives.ts";
import { KilnError } from "../../../compiler/errors.ts";
import { nodeData, type Graph } from "../../../compiler/ir/graph.ts";
import { ndarray, type NDArray } from "../../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { printGraph } from "../../../compiler/ir/print.ts";
import { numel, type Dim } from "../../../compiler/ir/shape.ts";
import gpt2 from "../../../models/gpt2.ts";
import seq2seq from "../../../models/seq2seq.ts";
import { build, kilnError, randn, rng, run } from "../util.ts";

const GPT2_SMALL = { vocab_size: 97, n_positions: 16, n_embd: 24, n_layer: 2, n_head: 3 };
const SEQ2SEQ_SMALL = {
  num_encoder_layers: 2,
  num_decoder_layers: 2,
  emb_size: 24,
  nhead: 3,
  src_vocab_size: 41,
  tgt_vocab_size: 37,
  dim_feedforward: 40,
};

const models: [string, () => Graph][] = [
  ["gpt2", () => buildGraph(gpt2, GPT2_SMALL)],
  ["seq2seq", () => buildGraph(seq2seq, SEQ2SEQ_SMALL)],
];

describe("golden files", () => {
  for (const [name, make] of models)
    it(`test/golden/${name}.ir is the printed IR of ${name}`, () => {
      const file = new URL(`../../golden/${name}.ir`, import.meta.url);
      const text = printGraph(make());
      if (process.env.UPDATE_GOLDEN === "1") writeFileSync(file, text);
      expect(existsSync(file), `missing ${file.pathname}: run with UPDATE_GOLDEN=1`).toBe(true);
      expect(text).toBe(readFileSync(file, "utf8"));
      // the golden file is itself valid IR that prints back unchanged
      expect(printGraph(parseGraph(readFileSync(file, "utf8"), `${name}.ir`))).toBe(text);
    });
});

describe("print → parse → print", () => {
  for (const [name, make] of models)
    for (const locations of [false, true])
      it(`is the identity on ${name} ${locations ? "with" : "without"} locations`, () => {
        const g = make();
        const text = printGraph(g, { locations });
        const back = parseGraph(text);
        expect(printGraph(back, { locations })).toBe(text);
        expect(back.inputs).toEqual(g.inputs);
        expect(back.outputs).toEqual(g.outputs);
        expect(back.bounds).toEqual(g.bounds);
        expect(back.nodes.order).toBe(g.nodes.order);
        g.nodes.forEachNode((k, n) => {
          const b = nodeData(back, k);
          expect(b.op).toBe(n.op);
          expect(b.attrs).toEqual(n.attrs);
          expect(b.type).toEqual(n.type);
          if (locations && n.op !== "input") expect(b.loc).toBe(n.loc);
        });
      });

  it("locations name the model file's lines; without them, parsed nodes are located by IR line", () => {
    const g = buildGraph(gpt2, GPT2_SMALL);
    expect(printGraph(g, { locations: true })).toMatch(/ # @ models\/gpt2\.ts:\d+\n/);
    const back = parseGraph(printGraph(g), "gpt2.ir");
    const lines = printGraph(g).split("\n");
    back.nodes.forEachNode((k, n) => {
      if (n.op === "input") return;
      const line = Number(/^gpt2\.ir:(\d+)$/.exec(n.loc ?? "")?.[1]);
      expect(lines[line - 1]).toMatch(new RegExp(`^  %${k.replace(/\./g, "\\.")} = `));
    });
  });

  it("keeps the making pass and the location in the trailing comment", () => {
    const g = build((m) => p.softmax(p.mul(m.input("x", "f32", ["T", 4]), 0.5)));
    const nodes = g.nodes.copy();
    nodes.mergeNodeAttributes("softmax", { origin: "fuse-scale-softmax" });
    const g2: Graph = { ...g, nodes };
    const text = printGraph(g2, { locations: true });
    expect(text).toMatch(
      /: f32\[T,4\]  # fuse-scale-softmax @ test\/compiler\/ir\/text\.test\.ts:\d+\n/,
    );
    const back = parseGraph(text);
    expect(nodeData(back, "softmax").origin).toBe("fuse-scale-softmax");
    expect(printGraph(back, { locations: true })).toBe(text);
    expect(printGraph(back)).toBe(printGraph(g2));
  });

  it("round-trips special numbers and symbolic sums", () => {
    const g = build((m) => {
      const x = m.input("x", "f32", ["P+T", 2]);
      const y = m.input("inf", "f32", ["nan", "inf"]); // symbols that read like numbers
      const s = p.maskedFill(x, m.param("mask", [2]), -Infinity);
      const c = [NaN, Infinity, -0, 5e-324, 1e21, 1 / 3, -1.5e-7].map((v) => m.scalar(v, x));
      return [s, p.relu(y), ...c, p.range(x, "P+T", "P"), p.reshape(x, [2, "P+T"])];
    });
    const text = printGraph(g);
    expect(text).toContain("{value=nan}");
    expect(text).toContain("{value=-inf}");
    expect(text).toContain("{value=-0}");
    expect(text).toContain("%inf: f32[nan,inf]");
    const back = parseGraph(text);
    expect(printGraph(back)).toBe(text);
    for (const k of ["c", "c_1", "c_2", "c_3", "c_4", "c_5", "c_6"]) {
      const [a, b] = [nodeData(g, k), nodeData(back, k)];
      if (a.op !== "const" || b.op !== "const") throw new Error("expected consts");
      expect(Object.is(a.attrs.value, b.attrs.value)).toBe(true);
    }
  });
});

describe("strings in attributes", () => {
  const names = [
    'say "hi"',
    "back\\slash\\",
    "hash # is not a comment",
    'a "#" quoted',
    "line\u2028sep\u2029para",
    "new\nline\ttab\r",
    "ünï cödé 日本 🙂",
    "",
    "x".repeat(5000),
    "h.0.attn.c_attn.weight".repeat(40),
    '\\"',
  ];

  it("param names with quotes, backslashes, #, line separators and great length round-trip", () => {
    const params: Record<string, NDArray> = {};
    const g = build((m) => {
      const x = m.input("x", "f32", [2]);
      let acc = x;
      names.forEach((name, i) => {
        params[name] = ndarray([2], [i, -i]);
        acc = p.add(acc, m.param(name, [2]));
      });
      return acc;
    });
    const text = printGraph(g);
    expect(text).toContain("\\u2028");
    expect(text).not.toContain("\u2028");
    for (const locations of [false, true]) {
      const t = printGraph(g, { locations });
      const back = parseGraph(t);
      expect(printGraph(back, { locations })).toBe(t);
      const got = back.nodes
        .filterNodes((_k, n) => n.op === "param")
        .map((k) => nodeData(back, k).attrs);
      expect(got).toEqual(names.map((name) => ({ name })));
    }
    const want = run(g, { x: ndarray([2], [1, 1]) }, params)[0];
    expect(run(parseGraph(text), { x: ndarray([2], [1, 1]) }, params)[0]).toEqual(want);
    const s = names.reduce((a, _n, i) => a + i, 0);
    expect(Array.from(want.data)).toEqual([1 + s, 1 - s]);
  });

  it("value names made from long or odd names stay valid and distinct", () => {
    const g = build((m) => {
      const x = m.input("x", "f32", [1]);
      return ["a".repeat(100), "a".repeat(100) + "b", "9 lives", "%x", "@g"].map((n) =>
        p.add(x, m.param(n, [1])),
      );
    });
    const keys = g.nodes.filterNodes((_k, n) => n.op === "param");
    expect(new Set(keys).size).toBe(5);
    for (const k of keys) expect(k).toMatch(/^[A-Za-z_][A-Za-z0-9_.]*$/);
    for (const k of keys) expect(k.length).toBeLessThanOrEqual(64 + 4); // 64 from the name, then _N
    expect(printGraph(parseGraph(printGraph(g)))).toBe(printGraph(g));
  });
});

describe("parser errors", () => {
  const GOOD = [
    "graph @t(%x: f32[T,4]) -> (f32[T,4]) {", // 1
    '  dim T <= 8 "the context"', // 2
    '  %w = param() {name="w"} : f32[4,4]', // 3
    "  %y = matmul(%x, %w) {transposeB=false} : f32[T,4]", // 4
    "  return %y", // 5
    "}", // 6
  ];
  const edit = (line: number, text: string) =>
    GOOD.map((l, i) => (i === line - 1 ? text : l)).join("\n");

  function parseError(text: string, line: number, detail: string | RegExp): KilnError {
    const e = kilnError(() => parseGraph(text), "ir");
    expect(e.where).toBe(`<ir>:${line}`);
    if (typeof detail === "string") expect(e.detail).toContain(detail);
    else expect(e.detail).toMatch(detail);
    return e;
  }

  it("accepts the unedited text", () => {
    expect(printGraph(parseGraph(GOOD.join("\n")))).toContain(
      "%y = matmul(%x, %w) {transposeB=false}",
    );
  });

  it("unknown op", () => {
    parseError(edit(3, '  %w = parm() {name="w"} : f32[4,4]'), 3, "unknown op parm");
  });

  it("undefined operand", () => {
    parseError(
      edit(4, "  %y = matmul(%x, %v) {transposeB=false} : f32[T,4]"),
      4,
      "%v is used before it is defined",
    );
    parseError(edit(5, "  return %z"), 5, "%z is not defined");
  });

  it("missing, unknown and duplicate-value attributes", () => {
    parseError(edit(4, "  %y = matmul(%x, %w) : f32[T,4]"), 4, "matmul needs attribute transposeB");
    parseError(edit(3, "  %w = param() : f32[4,4]"), 3, "param needs attribute name");
    parseError(
      edit(4, "  %y = matmul(%x, %w) {transposeB=false, bias=1} : f32[T,4]"),
      4,
      "matmul has no attribute bias",
    );
    parseError(edit(4, '  %w = param() {name="v"} : f32[4,4]'), 4, "%w defined twice");
  });

  it("wrong attribute kind", () => {
    parseError(
      edit(4, "  %y = matmul(%x, %w) {transposeB=1} : f32[T,4]"),
      4,
      "attribute transposeB must be bool",
    );
    parseError(edit(3, "  %w = param() {name=w} : f32[4,4]"), 3, "attribute name must be string");
    parseError(
      edit(4, "  %y = slice(%x) {axis=1.5, start=0, size=4} : f32[T,4]"),
      4,
      "attribute axis must be int",
    );
    parseError(edit(4, '  %y = transpose(%x) {perm="1,0"} : f32[4,T]'), 4, "expected '['");
    parseError(edit(4, "  %y = reshape(%x) {shape=[T,-4]} : f32[T,4]"), 4, "expected a dim");
  });

  it("bad type", () => {
    parseError(
      edit(3, '  %w = param() {name="w"} : f33[4,4]'),
      3,
      "expected a dtype (f32, f16, i32)",
    );
    parseError(edit(3, '  %w = param() {name="w"} : f32[4 4]'), 3, "expected ','");
    parseError(edit(3, '  %w = param() {name="w"} : f32[4,1.5]'), 3, "expected a dim");
    parseError(edit(3, '  %w = param() {name="w"}'), 3, "expected ':'");
    parseError(
      edit(3, '  %w = param() {name="w"} : f32[4,4] extra'),
      3,
      "unexpected text after the type",
    );
    parseError(edit(1, "graph @t(%x: f32[T,$]) -> (f32[T,4]) {"), 1, "unexpected text at column");
  });

  it("text after the closing '}'", () => {
    parseError(
      [...GOOD, "", "  %z = neg(%y) : f32[T,4]"].join("\n"),
      8,
      "text after the closing '}'",
    );
    parseError(edit(6, "} junk"), 6, "unexpected text after '}'");
  });

  it("a recorded type that disagrees with the op's type rule", () => {
    parseError(
      edit(4, "  %y = matmul(%x, %w) {transposeB=false} : f32[4,T]"),
      4,
      "recorded type f32[4,T] but matmul gives f32[T,4]",
    );
    parseError(
      edit(4, "  %y = matmul(%x, %w) {transposeB=false} : i32[T,4]"),
      4,
      "recorded type i32[T,4]",
    );
    parseError(
      edit(4, "  %y = matmul(%x, %x) {transposeB=false} : f32[T,4]"),
      4,
      "inner dims differ",
    );
  });

  it("a wrong operand count", () => {
    parseError(
      edit(4, "  %y = matmul(%x) {transposeB=false} : f32[T,4]"),
      4,
      "takes 2 operand(s), got 1",
    );
  });

  it("a return that disagrees with the signature", () => {
    parseError(
      GOOD.join("\n").replace("-> (f32[T,4])", "-> (f32[T,5])"),
      5,
      "but the signature says (f32[T,5])",
    );
    parseError(edit(5, "  return %y, %w"), 5, "returns (f32[T,4], f32[4,4])");
  });

  it("structure: missing '}', missing return, statement after return, empty text, bad header", () => {
    parseError(GOOD.slice(0, 5).join("\n"), 5, "missing closing '}'");
    parseError(edit(5, ""), 6, "graph has no return");
    parseError(
      [...GOOD.slice(0, 5), "  %z = neg(%y) : f32[T,4]", "}"].join("\n"),
      6,
      "statement after return",
    );
    expect(kilnError(() => parseGraph(" \n# only a comment\n"), "ir").detail).toBe("empty IR text");
    parseError(edit(1, "grph @t(%x: f32[T,4]) -> (f32[T,4]) {"), 1, "expected 'graph");
    parseError(edit(1, "graph @t(%x: f32[T,4]) (f32[T,4]) {"), 1, "expected '->'");
    parseError(edit(2, "  dim T <= 8"), 2, "expected a quoted reason");
  });

  it("counts blank and comment lines, and names the file given", () => {
    const text = [
      "# a header comment",
      "",
      ...GOOD.slice(0, 3),
      "",
      "  # a comment line",
      "  %y = neg(%q) : f32[T,4]",
      ...GOOD.slice(4),
    ].join("\n");
    parseError(text, 8, "%q is used before it is defined");
    const e = kilnError(() => parseGraph(edit(3, "  %w = nope() : f32[4]"), "block.ir"), "ir");
    expect(e.where).toBe("block.ir:3");
    expect(e.message).toBe("block.ir:3: unknown op nope");
  });
});

/** A random graph through the DSL: a sequence of steps, each picking an op and its operands from
 *  what has been built so far. Steps that do not fit the chosen operand are skipped. */
interface Step {
  readonly op: number;
  readonly a: number;
  readonly b: number;
  readonly c: number;
}

const MAX_ELEMS = 96;

function concreteSize(shape: readonly Dim[], t: number): number {
  return numel(shape.map((d) => (typeof d === "number" ? d : t)));
}

function randomGraph(
  steps: readonly Step[],
  c: number,
  t: number,
  seed: number,
): { g: Graph; params: Map<string, NDArray> } {
  const m = new ModelBuilder("random");
  const params = new Map<string, NDArray>();
  let pn = 0;
  const param = (shape: readonly number[], data?: NDArray): Tensor => {
    const name = `p${pn++}`;
    params.set(name, data ?? randn(shape, seed + pn));
    return m.param(name, shape);
  };
  const x = m.input("x", "f32", ["T", c]);
  const pool: Tensor[] = [x, m.input("y", "f32", [c])];
  const UNARY = [p.neg, p.exp, p.tanh, p.relu, p.gelu, p.geluTanh, p.sqrt, p.rsqrt];
  const BINARY = [p.add, p.sub, p.mul, p.div];
  for (const s of steps) {
    const v = pool[s.a % pool.length];
    const shape = v.type.shape;
    const r = shape.length;
    const last = shape[r - 1];
    const axis = s.b % Math.max(r, 1);
    let out: Tensor | undefined;
    switch (s.op % 14) {
      case 0:
        if (r > 0) out = UNARY[s.b % UNARY.length](v);
        break;
      case 1: {
        const f = BINARY[s.b % BINARY.length];
        const same = pool.filter(
          (u) => u !== v && JSON.stringify(u.type.shape) === JSON.stringify(shape),
        );
        if (s.c % 3 === 0) out = f(v, (s.c % 7) - 3.5);
        else if (s.c % 3 === 1 && typeof last === "number") out = f(param([last]), v);
        else if (same.length > 0) out = f(v, same[s.c % same.length]);
        break;
      }
      case 2:
        if (r >= 2 && typeof last === "number") {
          const n = 1 + (s.c % 4);
          out = p.matmul(v, s.b % 2 ? param([n, last]) : param([last, n]), {
            transposeB: s.b % 2 === 1,
          });
        }
        break;
      case 3:
        if (r >= 2) {
          const perm = [...Array(r).keys()].sort(
            (i, j) => ((i * 7 + s.c) % 5) - ((j * 7 + s.c) % 5) || i - j,
          );
          out = p.transpose(v, perm);
        }
        break;
      case 4: {
        // merge axis with the next, or split a concrete axis in two
        const [d, e] = [shape[axis], shape[axis + 1]];
        if (s.c % 2 === 0 && typeof d === "number" && typeof e === "number")
          out = p.reshape(v, [...shape.slice(0, axis), d * e, ...shape.slice(axis + 2)]);
        else if (typeof d === "number" && d % 2 === 0 && r < 4)
          out = p.reshape(v, [...shape.slice(0, axis), 2, d / 2, ...shape.slice(axis + 1)]);
        break;
      }
      case 5: {
        const d = shape[axis];
        if (typeof d === "number" && d > 0) {
          const start = s.c % d;
          out = p.slice(v, axis, start, 1 + ((s.c >> 3) % (d - start)));
        }
        break;
      }
      case 6:
        if (r > 0) out = p.softmax(v, axis - r);
        break;
      case 7:
        if (r > 0 && typeof last === "number")
          out = p.layerNormOp(v, param([last]), param([last]), [1e-5, 0.1][s.c % 2]);
        break;
      case 8:
        if (r > 0) out = s.c % 2 ? p.sum(v, axis) : p.mean(v, axis);
        break;
      case 9:
        if (r >= 2) out = p.causalMask(v);
        break;
      case 10:
        if (r > 0 && typeof last === "number") {
          const bits = ndarray(
            [last],
            Array.from({ length: last }, (_, i) => ((s.c >> i) & 1) * (i + 1)),
          );
          out = p.maskedFill(v, param([last], bits), [-Infinity, 0, -1e9, 2.5][s.b % 4]);
        }
        break;
      case 11:
        out = p.gather(param([5, 1 + (s.c % 3)]), p.range(x, "T", s.b % 2)); // T ≤ 4
        break;
      case 12:
        out = p.sinusoidal(p.range(x, "T"), 2 * (1 + (s.c % 3)));
        break;
      case 13:
        if (r >= 1)
          out = p.matmul(
            p.reshape(v, [...shape, 1]),
            p.reshape(v, [...shape.slice(0, -1), 1, last]),
          );
        break;
    }
    if (out && concreteSize(out.type.shape, t) <= MAX_ELEMS && out.type.shape.length <= 4)
      pool.push(out);
  }
  const outs = [pool[pool.length - 1], pool[Math.floor(pool.length / 2)]];
  return { g: m.finish(outs[0] === outs[1] ? [outs[0]] : outs), params };
}

describe("property: random DSL graphs", () => {
  it("round-trip through print/parse and interpret to the same numbers", () => {
    const step = fc.record({ op: fc.nat(13), a: fc.nat(1000), b: fc.nat(1000), c: fc.nat(1000) });
    fc.assert(
      fc.property(
        fc.array(step, { minLength: 1, maxLength: 24 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.nat(1 << 20),
        fc.boolean(),
        (steps, c, t, seed, locations) => {
          const { g, params } = randomGraph(steps, c, t, seed);
          const text = printGraph(g, { locations });
          const back = parseGraph(text);
          expect(printGraph(back, { locations })).toBe(text);
          const inputs = { x: randn([t, c], seed), y: randn([c], seed + 1) };
          const fed = Object.fromEntries(params);
          const want = run(g, inputs, fed).map((a) => [a.shape, Array.from(a.data)]);
          const got = run(back, inputs, fed).map((a) => [a.shape, Array.from(a.data)]);
          expect(got).toEqual(want);
        },
      ),
      { numRuns: 200, seed: 20240611 },
    );
  });

  it("the generator reaches every kind of step", () => {
    const r = rng(7);
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const steps = Array.from({ length: 20 }, () => ({
        op: Math.floor(r() * 14),
        a: Math.floor(r() * 1000),
        b: Math.floor(r() * 1000),
        c: Math.floor(r() * 1000),
      }));
      randomGraph(steps, 4, 3, i).g.nodes.forEachNode((_k, n) => void seen.add(n.op));
    }
    for (const op of [
      "matmul",
      "transpose",
      "reshape",
      "slice",
      "softmax",
      "layer_norm",
      "masked_fill",
      "causal_mask",
      "gather",
      "sinusoidal",
      "reduce_sum",
      "reduce_mean",
      "gelu",
      "div",
    ])
      expect(seen).toContain(op);
  });
});
