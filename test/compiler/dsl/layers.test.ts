/** Transformer layers built through the DSL, run by the reference interpreter, against a direct
 *  float64 computation written here without the IR: attention per head as softmax(q·kᵀ/√d)·v with
 *  causal and key-padding masks, cross-attention with Tq ≠ Tk, feed-forward with each activation,
 *  encoder and decoder layers with pre- and post-norm, and both reference models end to end. */
import { describe, expect, it } from "vitest";
import type { ModelBuilder } from "../../../compiler/dsl/builder.ts";
import {
  crossAttention,
  decoderLayer,
  embed,
  encoderLayer,
  feedForward,
  learnedPositions,
  multiHeadAttention,
  selfAttention,
  sinusoidalPositions,
  type Activation,
  type AttentionParams,
  type DecoderLayerParams,
  type EncoderLayerParams,
  type FeedForwardParams,
  type LinearParams,
  type NormParams,
  type NormPlacement,
} from "../../../compiler/dsl/layers.ts";
import { buildGraph } from "../../../compiler/dsl/model.ts";
import { erf } from "../../../compiler/ir/erf.ts";
import type { Graph } from "../../../compiler/ir/graph.ts";
import { ndarray, type NDArray } from "../../../compiler/ir/ndarray.ts";
import gpt2 from "../../../models/gpt2.ts";
import seq2seq from "../../../models/seq2seq.ts";
import { build, expectClose, randn, run } from "../util.ts";

// ---- the reference: plain loops over row-major float64 arrays ----

type M = NDArray; // a matrix [rows, cols]

function at(a: M, i: number, j: number): number {
  return a.data[i * a.shape[1] + j];
}

function matrix(rows: number, cols: number, f: (i: number, j: number) => number): M {
  const out = ndarray([rows, cols]);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out.data[i * cols + j] = f(i, j);
  return out;
}

/** x·W (+ b) with W [in, out], or x·Wᵀ (+ b) with W [out, in]. */
function refLinear(x: M, w: NDArray, b: NDArray | undefined, layout: "in_out" | "out_in"): M {
  const [n, k] = x.shape;
  const out = layout === "in_out" ? w.shape[1] : w.shape[0];
  return matrix(n, out, (i, j) => {
    let s = b ? b.data[j] : 0;
    for (let t = 0; t < k; t++)
      s += at(x, i, t) * (layout === "in_out" ? at(w, t, j) : at(w, j, t));
    return s;
  });
}

function cols(x: M, start: number, size: number): M {
  return matrix(x.shape[0], size, (i, j) => at(x, i, start + j));
}

function refLayerNorm(x: M, g: NDArray, b: NDArray, eps: number): M {
  const [n, c] = x.shape;
  const out = ndarray([n, c]);
  for (let i = 0; i < n; i++) {
    let mu = 0;
    for (let j = 0; j < c; j++) mu += at(x, i, j) / c;
    let v = 0;
    for (let j = 0; j < c; j++) v += (at(x, i, j) - mu) ** 2 / c;
    for (let j = 0; j < c; j++)
      out.data[i * c + j] = ((at(x, i, j) - mu) / Math.sqrt(v + eps)) * g.data[j] + b.data[j];
  }
  return out;
}

const ACT: Record<Activation, (x: number) => number> = {
  relu: (x) => Math.max(0, x),
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
};

function add(a: M, b: M): M {
  return matrix(a.shape[0], a.shape[1], (i, j) => at(a, i, j) + at(b, i, j));
}

interface RefMask {
  causal?: boolean;
  pad?: readonly number[]; // [Tk], non-zero where padding
}

/** Per head h: softmax(q_h·k_hᵀ/√d + mask)·v_h, heads concatenated along channels. A query that
 *  sees no key gets zeros. */
function refAttention(q: M, k: M, v: M, heads: number, mask: RefMask = {}): M {
  const [tq, c] = q.shape;
  const tk = k.shape[0];
  const d = c / heads;
  const out = ndarray([tq, c]);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < tq; i++) {
      const scores: number[] = [];
      for (let j = 0; j < tk; j++) {
        const hidden = (mask.causal && j > i + (tk - tq)) || (mask.pad && mask.pad[j] !== 0);
        let s = 0;
        for (let e = 0; e < d; e++) s += at(q, i, h * d + e) * at(k, j, h * d + e);
        scores.push(hidden ? -Infinity : s / Math.sqrt(d));
      }
      const mx = Math.max(...scores);
      if (mx === -Infinity) continue;
      const w = scores.map((s) => Math.exp(s - mx));
      const z = w.reduce((a, b) => a + b, 0);
      for (let e = 0; e < d; e++) {
        let acc = 0;
        for (let j = 0; j < tk; j++) acc += (w[j] / z) * at(v, j, h * d + e);
        out.data[i * c + h * d + e] = acc;
      }
    }
  return out;
}

// ---- weights: declared through the DSL and fed from one random checkpoint ----

/** Random weights for every param of a graph, keyed by param name; deterministic per name. */
function checkpoint(g: Graph, scale = 0.5): Map<string, NDArray> {
  const ws = new Map<string, NDArray>();
  let seed = 1;
  g.nodes.forEachNode((_k, n) => {
    if (n.op !== "param") return;
    const shape = n.type.shape.map(Number);
    ws.set(n.attrs.name, randn(shape, 1000 + seed++, scale));
  });
  return ws;
}

function exec(g: Graph, inputs: Record<string, NDArray>, ws: Map<string, NDArray>): NDArray[] {
  return run(g, inputs, Object.fromEntries(ws));
}

interface LinearNames {
  w: string;
  b?: string;
  layout: "in_out" | "out_in";
}

function linearParams(
  m: ModelBuilder,
  name: string,
  nIn: number,
  nOut: number,
  layout: "in_out" | "out_in",
  bias = true,
): LinearParams {
  return {
    weight: m.param(`${name}.w`, layout === "in_out" ? [nIn, nOut] : [nOut, nIn]),
    ...(bias ? { bias: m.param(`${name}.b`, [nOut]) } : {}),
    layout,
  };
}

function refLin(
  ws: Map<string, NDArray>,
  x: M,
  name: string,
  layout: "in_out" | "out_in",
  bias = true,
): M {
  const n: LinearNames = { w: `${name}.w`, ...(bias ? { b: `${name}.b` } : {}), layout };
  return refLinear(x, ws.get(n.w)!, n.b ? ws.get(n.b) : undefined, layout);
}

function normParams(m: ModelBuilder, name: string, c: number, eps = 1e-5): NormParams {
  return { weight: m.param(`${name}.g`, [c]), bias: m.param(`${name}.b`, [c]), eps };
}

function refNorm(ws: Map<string, NDArray>, x: M, name: string, eps = 1e-5): M {
  return refLayerNorm(x, ws.get(`${name}.g`)!, ws.get(`${name}.b`)!, eps);
}

function attnParams(
  m: ModelBuilder,
  name: string,
  c: number,
  heads: number,
  layout: "in_out" | "out_in",
): AttentionParams {
  return {
    qkv: linearParams(m, `${name}.qkv`, c, 3 * c, layout),
    out: linearParams(m, `${name}.out`, c, c, layout),
    heads,
  };
}

/** q, k, v projections of a merged [q;k;v] weight: thirds of its output features. */
function refProject(
  ws: Map<string, NDArray>,
  xq: M,
  xkv: M,
  name: string,
  layout: "in_out" | "out_in",
): [M, M, M] {
  const c = xq.shape[1];
  const full = (x: M) => refLin(ws, x, `${name}.qkv`, layout);
  return [cols(full(xq), 0, c), cols(full(xkv), c, c), cols(full(xkv), 2 * c, c)];
}

function refAttnBlock(
  ws: Map<string, NDArray>,
  xq: M,
  xkv: M,
  name: string,
  heads: number,
  layout: "in_out" | "out_in",
  mask: RefMask = {},
): M {
  const [q, k, v] = refProject(ws, xq, xkv, name, layout);
  return refLin(ws, refAttention(q, k, v, heads, mask), `${name}.out`, layout);
}

function ffnParams(
  m: ModelBuilder,
  name: string,
  c: number,
  f: number,
  act: Activation,
  layout: "in_out" | "out_in",
): FeedForwardParams {
  return {
    up: linearParams(m, `${name}.up`, c, f, layout),
    down: linearParams(m, `${name}.down`, f, c, layout),
    activation: act,
  };
}

function refFfn(
  ws: Map<string, NDArray>,
  x: M,
  name: string,
  act: Activation,
  layout: "in_out" | "out_in",
): M {
  const h = refLin(ws, x, `${name}.up`, layout);
  return refLin(ws, { shape: h.shape, data: h.data.map(ACT[act]) }, `${name}.down`, layout);
}

const MASKS: [string, RefMask][] = [
  ["no mask", {}],
  ["causal", { causal: true }],
  ["key padding", { pad: [0, 0, 1, 0, 1] }],
  ["causal + key padding", { causal: true, pad: [0, 1, 0, 0, 1] }],
  ["every key padded", { pad: [1, 1, 1, 1, 1] }],
  ["first key padded, causal (query 0 sees nothing)", { causal: true, pad: [1, 0, 0, 0, 0] }],
];

describe("multiHeadAttention", () => {
  for (const [name, mask] of MASKS)
    it(`matches per-head softmax(q·kᵀ/√d)·v: ${name}`, () => {
      const [t, c, heads] = [5, 12, 3];
      const g = build((m) => {
        const [q, k, v] = ["q", "k", "v"].map((n) => m.input(n, "f32", ["T", c]));
        const pad = mask.pad ? m.input("pad", "i32", ["T"]) : undefined;
        return multiHeadAttention(q, k, v, heads, {
          causal: mask.causal,
          ...(pad ? { keyPadding: pad } : {}),
        });
      });
      const [q, k, v] = [1, 2, 3].map((s) => randn([t, c], s, 2));
      const inputs: Record<string, NDArray> = {
        q,
        k,
        v,
        ...(mask.pad ? { pad: ndarray([t], mask.pad) } : {}),
      };
      const [r] = run(g, inputs);
      expectClose(r, refAttention(q, k, v, heads, mask));
      expect(r.data.every(Number.isFinite)).toBe(true);
      if (mask.pad?.every((p) => p !== 0)) expect(r.data.every((x) => x === 0)).toBe(true);
    });

  it("attends over Tk ≠ Tq keys (causal is bottom-right aligned, as with a KV cache)", () => {
    const [tq, tk, c, heads] = [2, 6, 8, 2];
    for (const mask of [
      {},
      { causal: true },
      { pad: [0, 1, 0, 0, 0, 1] },
      { causal: true, pad: [1, 0, 0, 0, 0, 1] },
    ] as RefMask[]) {
      const g = build((m) => {
        const q = m.input("q", "f32", ["T", c]);
        const k = m.input("k", "f32", ["S", c]);
        const v = m.input("v", "f32", ["S", c]);
        const pad = mask.pad ? m.input("pad", "f32", ["S"]) : undefined;
        return multiHeadAttention(q, k, v, heads, {
          causal: mask.causal,
          ...(pad ? { keyPadding: pad } : {}),
        });
      });
      const [q, k, v] = [randn([tq, c], 4), randn([tk, c], 5), randn([tk, c], 6)];
      const [r] = run(g, { q, k, v, ...(mask.pad ? { pad: ndarray([tk], mask.pad) } : {}) });
      expectClose(r, refAttention(q, k, v, heads, mask));
    }
  });

  it("one head is plain scaled dot-product attention", () => {
    const g = build((m) => {
      const x = m.input("x", "f32", [2, 2]);
      return multiHeadAttention(x, x, x, 1);
    });
    // q = k = v = I: scores = I/√2, so row i weights e^(1/√2) on key i and 1 on the other
    const [r] = run(g, { x: ndarray([2, 2], [1, 0, 0, 1]) });
    const a = Math.exp(1 / Math.SQRT2);
    expectClose(r, ndarray([2, 2], [a / (a + 1), 1 / (a + 1), 1 / (a + 1), a / (a + 1)]));
  });
});

describe("selfAttention and crossAttention", () => {
  for (const layout of ["in_out", "out_in"] as const)
    it(`self-attention with a merged ${layout} projection, causal`, () => {
      const [t, c, heads] = [4, 12, 4];
      const g = build((m) =>
        selfAttention(m.input("x", "f32", ["T", c]), attnParams(m, "attn", c, heads, layout), {
          causal: true,
        }),
      );
      const ws = checkpoint(g);
      const x = randn([t, c], 11);
      const [r] = exec(g, { x }, ws);
      expectClose(r, refAttnBlock(ws, x, x, "attn", heads, layout, { causal: true }));
    });

  it("cross-attention: queries from x (Tq = 3), keys and values from memory (Tk = 5), padded memory", () => {
    const [tq, tk, c, heads] = [3, 5, 8, 2];
    const pad = [0, 0, 0, 1, 1];
    const g = build((m) => {
      const x = m.input("x", "f32", ["T", c]);
      const mem = m.input("memory", "f32", ["S", c]);
      return crossAttention(x, mem, attnParams(m, "xattn", c, heads, "out_in"), {
        keyPadding: m.input("pad", "i32", ["S"]),
      });
    });
    const ws = checkpoint(g);
    const [x, memory] = [randn([tq, c], 12), randn([tk, c], 13)];
    const [r] = exec(g, { x, memory, pad: ndarray([tk], pad) }, ws);
    expectClose(r, refAttnBlock(ws, x, memory, "xattn", heads, "out_in", { pad }));
    // the padded keys do not matter: changing their memory rows leaves the output as it was
    const other = ndarray(
      memory.shape,
      memory.data.map((v, i) => (i >= 3 * c ? v * 7 - 1 : v)),
    );
    expectClose(exec(g, { x, memory: other, pad: ndarray([tk], pad) }, ws)[0], r, 1e-13);
  });
});

describe("feedForward", () => {
  for (const act of ["relu", "gelu", "gelu_tanh"] as const)
    for (const layout of ["in_out", "out_in"] as const)
      it(`${act}, ${layout} weights`, () => {
        const [t, c, f] = [3, 4, 10];
        const g = build((m) =>
          feedForward(m.input("x", "f32", ["T", c]), ffnParams(m, "ffn", c, f, act, layout)),
        );
        const ws = checkpoint(g, 1);
        const x = randn([t, c], 21, 2);
        const [r] = exec(g, { x }, ws);
        expectClose(r, refFfn(ws, x, "ffn", act, layout));
      });

  it("the activations differ from each other on these inputs (the test would notice a swap)", () => {
    const outs = (["relu", "gelu", "gelu_tanh"] as const).map((act) => {
      const g = build((m) =>
        feedForward(m.input("x", "f32", [3, 4]), ffnParams(m, "ffn", 4, 10, act, "out_in")),
      );
      return exec(g, { x: randn([3, 4], 21, 2) }, checkpoint(g, 1))[0];
    });
    for (const [a, b] of [
      [0, 1],
      [1, 2],
      [0, 2],
    ])
      expect(Array.from(outs[a].data)).not.toEqual(Array.from(outs[b].data));
  });
});

function encoderParams(m: ModelBuilder, c: number, heads: number, f: number): EncoderLayerParams {
  return {
    selfAttn: attnParams(m, "sa", c, heads, "out_in"),
    norm1: normParams(m, "n1", c),
    norm2: normParams(m, "n2", c),
    ffn: ffnParams(m, "ffn", c, f, "relu", "out_in"),
  };
}

function refEncoder(
  ws: Map<string, NDArray>,
  x: M,
  heads: number,
  place: NormPlacement,
  mask: RefMask,
): M {
  const sa = (h: M) => refAttnBlock(ws, h, h, "sa", heads, "out_in", mask);
  const ff = (h: M) => refFfn(ws, h, "ffn", "relu", "out_in");
  if (place === "pre") {
    x = add(x, sa(refNorm(ws, x, "n1")));
    return add(x, ff(refNorm(ws, x, "n2")));
  }
  x = refNorm(ws, add(x, sa(x)), "n1");
  return refNorm(ws, add(x, ff(x)), "n2");
}

describe("encoderLayer and decoderLayer", () => {
  for (const place of ["pre", "post"] as const)
    it(`encoderLayer, ${place}-norm, with key padding`, () => {
      const [t, c, heads, f] = [5, 8, 2, 12];
      const pad = [0, 0, 0, 0, 1];
      const g = build((m) => {
        const x = m.input("x", "f32", ["S", c]);
        return encoderLayer(x, encoderParams(m, c, heads, f), place, {
          keyPadding: m.input("pad", "i32", ["S"]),
        });
      });
      const ws = checkpoint(g);
      const x = randn([t, c], 31);
      const [r] = exec(g, { x, pad: ndarray([t], pad) }, ws);
      expectClose(r, refEncoder(ws, x, heads, place, { pad }), 1e-11);
    });

  it("pre- and post-norm give different results (the test would notice a swap)", () => {
    const outs = (["pre", "post"] as const).map((place) => {
      const g = build((m) =>
        encoderLayer(m.input("x", "f32", [3, 8]), encoderParams(m, 8, 2, 12), place),
      );
      return exec(g, { x: randn([3, 8], 31) }, checkpoint(g))[0];
    });
    expect(Array.from(outs[0].data)).not.toEqual(Array.from(outs[1].data));
  });

  for (const place of ["pre", "post"] as const)
    it(`decoderLayer, ${place}-norm: causal self-attention, cross-attention to a longer memory`, () => {
      const [t, s, c, heads, f] = [3, 5, 8, 4, 6];
      const g = build((m) => {
        const x = m.input("x", "f32", ["T", c]);
        const mem = m.input("memory", "f32", ["S", c]);
        const l: DecoderLayerParams = {
          ...encoderParams(m, c, heads, f),
          crossAttn: attnParams(m, "xa", c, heads, "out_in"),
          norm3: normParams(m, "n3", c),
        };
        return decoderLayer(x, mem, l, place, { self: { causal: true } });
      });
      const ws = checkpoint(g);
      const [x0, memory] = [randn([t, c], 41), randn([s, c], 42)];
      const sa = (h: M) => refAttnBlock(ws, h, h, "sa", heads, "out_in", { causal: true });
      const xa = (h: M) => refAttnBlock(ws, h, memory, "xa", heads, "out_in");
      const ff = (h: M) => refFfn(ws, h, "ffn", "relu", "out_in");
      let x = x0;
      for (const [fn, n] of [
        [sa, "n1"],
        [xa, "n2"],
        [ff, "n3"],
      ] as const)
        x = place === "pre" ? add(x, fn(refNorm(ws, x, n))) : refNorm(ws, add(x, fn(x)), n);
      const [r] = exec(g, { x: x0, memory }, ws);
      expectClose(r, x, 1e-11);
    });
});

describe("embeddings and positions", () => {
  it("embed and learnedPositions gather rows; sinusoidalPositions follows §3.5", () => {
    const g = build((m) => {
      const ids = m.input("ids", "i32", ["T"]);
      const table = m.param("wte", [5, 4]);
      return [
        embed(table, ids),
        learnedPositions(m.param("wpe", [6, 4]), "T"),
        sinusoidalPositions(table, "T", 4),
      ];
    });
    const ws = checkpoint(g);
    const [e, pos, pe] = exec(g, { ids: ndarray([3], [4, 0, 4]) }, ws);
    const row = (w: NDArray, i: number) => Array.from(w.data.slice(i * 4, i * 4 + 4));
    expect(Array.from(e.data)).toEqual([
      ...row(ws.get("wte")!, 4),
      ...row(ws.get("wte")!, 0),
      ...row(ws.get("wte")!, 4),
    ]);
    expect(Array.from(pos.data)).toEqual([0, 1, 2].flatMap((i) => row(ws.get("wpe")!, i)));
    expectClose(
      pe,
      matrix(3, 4, (p, j) => (j % 2 ? Math.cos : Math.sin)(p / 10000 ** ((j - (j % 2)) / 4))),
    );
  });
});

describe("the reference models, end to end", () => {
  it("gpt2 matches a direct GPT-2 forward pass", () => {
    const cfg = {
      vocab_size: 11,
      n_positions: 8,
      n_embd: 12,
      n_layer: 2,
      n_head: 3,
      layer_norm_epsilon: 1e-5,
    };
    const g = buildGraph(gpt2, cfg);
    const ws = checkpoint(g, 0.3);
    const tokens = [3, 1, 4, 1, 5, 9];
    const [logits] = exec(g, { tokens: ndarray([tokens.length], tokens) }, ws);
    const w = (n: string) => ws.get(n)!;
    const C = cfg.n_embd;
    let x = matrix(
      tokens.length,
      C,
      (t, j) => at(w("wte.weight"), tokens[t], j) + at(w("wpe.weight"), t, j),
    );
    const ln = (h: M, n: string) => refLayerNorm(h, w(`${n}.weight`), w(`${n}.bias`), 1e-5);
    const conv = (h: M, n: string) => refLinear(h, w(`${n}.weight`), w(`${n}.bias`), "in_out");
    for (let i = 0; i < cfg.n_layer; i++) {
      const qkv = conv(ln(x, `h.${i}.ln_1`), `h.${i}.attn.c_attn`);
      const a = refAttention(cols(qkv, 0, C), cols(qkv, C, C), cols(qkv, 2 * C, C), cfg.n_head, {
        causal: true,
      });
      x = add(x, conv(a, `h.${i}.attn.c_proj`));
      const h = conv(ln(x, `h.${i}.ln_2`), `h.${i}.mlp.c_fc`);
      x = add(x, conv({ shape: h.shape, data: h.data.map(ACT.gelu_tanh) }, `h.${i}.mlp.c_proj`));
    }
    const want = refLinear(ln(x, "ln_f"), w("wte.weight"), undefined, "out_in");
    expectClose(logits, want, 1e-11);
    // causal: the logits of the first positions do not depend on later tokens
    const [shorter] = exec(g, { tokens: ndarray([3], tokens.slice(0, 3)) }, ws);
    expectClose(
      shorter,
      ndarray([3, cfg.vocab_size], logits.data.slice(0, 3 * cfg.vocab_size)),
      1e-12,
    );
  });

  it("seq2seq matches a direct encoder–decoder forward pass", () => {
    const cfg = {
      num_encoder_layers: 2,
      num_decoder_layers: 1,
      emb_size: 8,
      nhead: 2,
      src_vocab_size: 9,
      tgt_vocab_size: 7,
      dim_feedforward: 10,
    };
    const g = buildGraph(seq2seq, cfg);
    const ws = checkpoint(g, 0.4);
    const [src, tgt] = [
      [1, 8, 2, 5, 0],
      [6, 2, 3],
    ];
    const [logits] = exec(
      g,
      { src_tokens: ndarray([src.length], src), tokens: ndarray([tgt.length], tgt) },
      ws,
    );
    const w = (n: string) => ws.get(n)!;
    const E = cfg.emb_size;
    const emb = (ids: number[], table: string) =>
      matrix(
        ids.length,
        E,
        (p, j) =>
          at(w(table), ids[p], j) * Math.sqrt(E) +
          (j % 2 ? Math.cos : Math.sin)(p / 10000 ** ((j - (j % 2)) / E)),
      );
    const ln = (h: M, n: string) => refLayerNorm(h, w(`${n}.weight`), w(`${n}.bias`), 1e-5);
    const lin = (h: M, n: string) => refLinear(h, w(`${n}.weight`), w(`${n}.bias`), "out_in");
    const mha = (xq: M, xkv: M, n: string, causal: boolean) => {
      const [wi, bi] = [w(`${n}.in_proj_weight`), w(`${n}.in_proj_bias`)];
      const q = cols(refLinear(xq, wi, bi, "out_in"), 0, E);
      const kv = refLinear(xkv, wi, bi, "out_in");
      return lin(
        refAttention(q, cols(kv, E, E), cols(kv, 2 * E, E), cfg.nhead, { causal }),
        `${n}.out_proj`,
      );
    };
    const ffn = (h: M, n: string) => {
      const u = lin(h, `${n}.linear1`);
      return lin({ shape: u.shape, data: u.data.map(ACT.relu) }, `${n}.linear2`);
    };
    let mem = emb(src, "src_tok_emb.embedding.weight");
    for (let i = 0; i < cfg.num_encoder_layers; i++) {
      const p = `transformer.encoder.layers.${i}`;
      mem = ln(add(mem, mha(mem, mem, `${p}.self_attn`, false)), `${p}.norm1`);
      mem = ln(add(mem, ffn(mem, p)), `${p}.norm2`);
    }
    mem = ln(mem, "transformer.encoder.norm");
    let x = emb(tgt, "tgt_tok_emb.embedding.weight");
    for (let i = 0; i < cfg.num_decoder_layers; i++) {
      const p = `transformer.decoder.layers.${i}`;
      x = ln(add(x, mha(x, x, `${p}.self_attn`, true)), `${p}.norm1`);
      x = ln(add(x, mha(x, mem, `${p}.multihead_attn`, false)), `${p}.norm2`);
      x = ln(add(x, ffn(x, p)), `${p}.norm3`);
    }
    const want = lin(ln(x, "transformer.decoder.norm"), "generator");
    expectClose(logits, want, 1e-11);
  });
});
