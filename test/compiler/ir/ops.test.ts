/** The reference semantics of every op in OPS, on small cases computed by hand (or by a direct
 *  formula written here), run through the DSL and the float64 interpreter. */
import { afterAll, describe, expect, it } from "vitest";
import { ModelBuilder, type Tensor } from "../../../compiler/dsl/builder.ts";
import * as p from "../../../compiler/dsl/primitives.ts";
import { erf } from "../../../compiler/ir/erf.ts";
import type { Graph } from "../../../compiler/ir/graph.ts";
import type { NDArray } from "../../../compiler/ir/ndarray.ts";
import { OP_NAMES, type OpName } from "../../../compiler/ir/ops.ts";
import { parseExpr } from "../../../compiler/ir/expr.ts";
import { build, expectClose, kilnError, nd, randn, run, type Arrays } from "../util.ts";

/** Every op some graph in this file ran; checked against OP_NAMES at the end. */
const ran = new Set<OpName>();

function exec(g: Graph, inputs: Arrays = {}, params: Arrays = {}): NDArray[] {
  g.nodes.forEachNode((_k, n) => void ran.add(n.op));
  return run(g, inputs, params);
}

/** One input x of the given shape, f applied, run on `data`. */
function on(shape: readonly number[], data: readonly number[], f: (x: Tensor) => Tensor): NDArray {
  const g = build((m) => f(m.input("x", "f32", shape)));
  return exec(g, { x: nd(shape, data) })[0];
}

afterAll(() => {
  expect([...ran].sort()).toEqual([...OP_NAMES].sort());
});

describe("sources", () => {
  it("input and param pass their fed values through", () => {
    const g = build((m) => [m.input("x", "f32", [2]), m.param("w", [3])]);
    const [x, w] = exec(g, { x: nd([2], [1, 2]) }, { w: nd([3], [3, 4, 5]) });
    expectClose(x, [1, 2]);
    expectClose(w, [3, 4, 5]);
  });

  it("a missing or misshapen param is a checkpoint error; a missing input an input error", () => {
    const g = build((m) => p.add(m.input("x", "f32", [2]), m.param("w", [2])));
    expect(kilnError(() => exec(g, { x: nd([2], [1, 2]) }), "checkpoint").where).toBe('tensor "w"');
    const e = kilnError(
      () => exec(g, { x: nd([2], [1, 2]) }, { w: nd([3], [1, 2, 3]) }),
      "checkpoint",
    );
    expect(e.detail).toContain("[3]");
    expect(kilnError(() => exec(g, {}, { w: nd([2], [1, 2]) }), "input").where).toBe('input "x"');
  });

  it("an input longer than its dim's bound, or of the wrong rank or size, is an input error", () => {
    const m = new ModelBuilder("t");
    m.bound("T", 3, "the context length");
    const g = m.finish([p.relu(m.input("x", "f32", ["T", 2]))]);
    expect(
      kilnError(() => exec(g, { x: nd([4, 2], new Array(8).fill(0)) }), "input").detail,
    ).toContain("the context length");
    kilnError(() => exec(g, { x: nd([2], [0, 0]) }), "input");
    kilnError(() => exec(g, { x: nd([2, 3], new Array(6).fill(0)) }), "input");
  });

  it("const fills its declared type", () => {
    const g = build((m) => {
      const x = m.input("x", "f32", [2]);
      return [
        m.scalar(2.5, x),
        m.node("const", { value: -1 }, [], "c", { dtype: "f32", shape: [2, 2] }),
      ];
    });
    const [s, c] = exec(g, { x: nd([2], [0, 0]) });
    expectClose(s, nd([], [2.5]));
    expectClose(c, nd([2, 2], [-1, -1, -1, -1]));
  });

  it("range counts from start over a symbolic size", () => {
    const g = build((m) => {
      const x = m.input("x", "f32", ["T"]);
      return [p.range(x, "T"), p.range(x, "T", 3), p.range(x, 2, "T")];
    });
    const [a, b, c] = exec(g, { x: nd([4], [0, 0, 0, 0]) });
    expectClose(a, [0, 1, 2, 3]);
    expectClose(b, [3, 4, 5, 6]);
    expectClose(c, [4, 5]);
  });
});

describe("elementwise", () => {
  it("binary ops broadcast numpy-style", () => {
    const g = build((m) => {
      const a = m.input("a", "f32", [2, 3]);
      const row = m.input("row", "f32", [3]);
      const col = m.input("col", "f32", [2, 1]);
      return [
        p.add(a, row),
        p.mul(col, row),
        p.sub(a, col),
        p.div(a, row),
        p.add(a, 1),
        p.mul(2, a),
      ];
    });
    const a = nd([2, 3], [1, 2, 3, 4, 5, 6]);
    const row = nd([3], [10, 20, 30]);
    const col = nd([2, 1], [2, -1]);
    const [add, mul, sub, div, add1, mul2] = exec(g, { a, row, col });
    expectClose(add, nd([2, 3], [11, 22, 33, 14, 25, 36]));
    expectClose(mul, nd([2, 3], [20, 40, 60, -10, -20, -30]));
    expectClose(sub, nd([2, 3], [-1, 0, 1, 5, 6, 7]));
    expectClose(div, nd([2, 3], [0.1, 0.1, 0.1, 0.4, 0.25, 0.2]));
    expectClose(add1, nd([2, 3], [2, 3, 4, 5, 6, 7]));
    expectClose(mul2, nd([2, 3], [2, 4, 6, 8, 10, 12]));
  });

  it("broadcasting works in both directions and over leading axes", () => {
    const g = build((m) => p.add(m.input("a", "f32", [2, 1, 3]), m.input("b", "f32", [4, 1])));
    const [r] = exec(g, { a: nd([2, 1, 3], [1, 2, 3, 4, 5, 6]), b: nd([4, 1], [0, 10, 20, 30]) });
    expect(r.shape).toEqual([2, 4, 3]);
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 4; j++)
        for (let k = 0; k < 3; k++)
          expect(r.data[(i * 4 + j) * 3 + k]).toBe(3 * i + k + 1 + 10 * j);
  });

  it("incompatible shapes are refused by the type rule", () => {
    const m = new ModelBuilder("t");
    const e = kilnError(() => p.add(m.input("a", "f32", [2, 3]), m.input("b", "f32", [2])), "dsl");
    expect(e.detail).toBe("add: cannot broadcast [2,3] with [2]");
  });

  it("unary ops", () => {
    const xs = [-2, -0.5, 0, 0.5, 1, 3];
    const x = (f: (t: Tensor) => Tensor) => on([6], xs, f);
    expectClose(x(p.neg), [2, 0.5, -0, -0.5, -1, -3]);
    expectClose(x(p.exp), xs.map(Math.exp));
    expectClose(
      x(p.tanh),
      [
        -0.9640275800758169, -0.46211715726000974, 0, 0.46211715726000974, 0.7615941559557649,
        0.9950547536867305,
      ],
    );
    expectClose(x(p.relu), [0, 0, 0, 0.5, 1, 3]);
    expectClose(on([3], [4, 0.25, 2], p.sqrt), [2, 0.5, Math.SQRT2]);
    expectClose(on([3], [4, 0.25, 0], p.rsqrt), [0.5, 2, Infinity]);
    expectClose(on([1], [-1], p.sqrt), [NaN]);
  });

  it("gelu is x·Φ(x) with the exact normal CDF", () => {
    // Φ(1) = 0.8413447460685429, Φ(−1) = 1 − Φ(1), Φ(2) = 0.9772498680518208
    const r = on([5], [-1, 0, 1, 2, -10], p.gelu);
    expectClose(
      r,
      [
        -0.15865525393145707,
        0,
        0.8413447460685429,
        2 * 0.9772498680518208,
        -10 * 7.61985302416047e-24,
      ],
      1e-14,
    );
  });

  it("gelu_tanh is GPT-2's tanh approximation, within 1e-3 of gelu", () => {
    const xs = [-3, -1, -0.1, 0, 0.3, 1, 2.5];
    const approx = (x: number) =>
      0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    const r = on([xs.length], xs, p.geluTanh);
    expectClose(r, xs.map(approx), 1e-15);
    expect(r.data[5]).toBeCloseTo(0.8411919906082768, 15);
    const exact = on([xs.length], xs, p.gelu);
    for (let i = 0; i < xs.length; i++)
      expect(Math.abs(r.data[i] - exact.data[i])).toBeLessThan(1e-3);
  });

  it("elementwise ops need float operands of one dtype", () => {
    const m = new ModelBuilder("t");
    const ids = m.input("ids", "i32", [3]);
    expect(kilnError(() => p.relu(ids), "dsl").detail).toBe(
      "relu: needs a float dtype, got i32[3]",
    );
    expect(kilnError(() => p.add(ids, ids), "dsl").detail).toBe(
      "add: needs a float dtype, got i32[3]",
    );
  });
});

describe("erf", () => {
  it("matches known values to 1e-14", () => {
    const known: [number, number][] = [
      [0, 0],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2, 0.9953222650189527],
      [-3, -0.9999779095030014],
      [0.1, 0.1124629160182849],
      [-0.5, -0.5204998778130465],
      [3.5, 0.9999992569016276],
    ];
    for (const [x, v] of known) expect(Math.abs(erf(x) - v), `erf(${x})`).toBeLessThan(1e-14);
    expect(erf(0)).toBe(0);
  });

  it("is odd, monotone (to 2e-15, the series' absolute error near 6), bounded by 1, and exact at the ends", () => {
    // Regression: near |x| = 6 the series summed to 1 + 2⁻⁵², so gelu(−8.4) had the wrong sign.
    let prev = -1;
    for (let x = -7; x <= 7; x += 0.001) {
      const v = erf(x);
      expect(erf(-x)).toBe(-v);
      expect(v).toBeGreaterThanOrEqual(prev - 2e-15);
      expect(Math.abs(v)).toBeLessThanOrEqual(1);
      prev = v;
    }
    expect(erf(6)).toBe(1);
    expect(erf(-Infinity)).toBe(-1);
    expect(erf(1e-10)).toBeCloseTo((2 / Math.sqrt(Math.PI)) * 1e-10, 25);
    expect(erf(NaN)).toBeNaN();
  });
});

describe("matmul", () => {
  it("multiplies [M,K] × [K,N], and [M,K] × [N,K]ᵀ with transposeB", () => {
    const g = build((m) => {
      const a = m.input("a", "f32", [2, 3]);
      return [
        p.matmul(a, m.param("b", [3, 2])),
        p.matmul(a, m.param("bt", [2, 3]), { transposeB: true }),
      ];
    });
    const a = nd([2, 3], [1, 2, 3, 4, 5, 6]);
    const b = nd([3, 2], [7, 8, 9, 10, 11, 12]);
    const bt = nd([2, 3], [7, 9, 11, 8, 10, 12]); // bᵀ
    const [r, rt] = exec(g, { a }, { b, bt });
    // [1 2 3; 4 5 6] × [7 8; 9 10; 11 12] = [58 64; 139 154]
    expectClose(r, nd([2, 2], [58, 64, 139, 154]));
    expectClose(rt, nd([2, 2], [58, 64, 139, 154]));
  });

  it("batches, broadcasting batch dims of size 1 and missing leading dims", () => {
    const naive = (
      a: NDArray,
      b: NDArray,
      bi: (i: number, j: number) => number,
      ai: (i: number, j: number) => number,
    ) => {
      // a [2,1,2,3] (batch i), b [3,3,2] (batch j) → [2,3,2,2]
      const out: number[] = [];
      for (let i = 0; i < 2; i++)
        for (let j = 0; j < 3; j++)
          for (let r = 0; r < 2; r++)
            for (let c = 0; c < 2; c++) {
              let s = 0;
              for (let k = 0; k < 3; k++)
                s += a.data[ai(i, 0) + r * 3 + k] * b.data[bi(j, 0) + k * 2 + c];
              out.push(s);
            }
      return nd([2, 3, 2, 2], out);
    };
    const a = randn([2, 1, 2, 3], 1);
    const b = randn([3, 3, 2], 2);
    const g = build((m) => [
      p.matmul(m.input("a", "f32", [2, 1, 2, 3]), m.input("b", "f32", [3, 3, 2])),
      p.matmul(m.input("b2", "f32", [3, 3, 2]), m.param("w", [2, 2])),
    ]);
    const w = nd([2, 2], [1, 2, 3, 4]);
    const [r, r2] = exec(g, { a, b, b2: b }, { w });
    expectClose(
      r,
      naive(
        a,
        b,
        (j) => j * 6,
        (i) => i * 6,
      ),
    );
    // [3,3,2] × [2,2]: the rank-2 operand is shared by every batch
    const want: number[] = [];
    for (let t = 0; t < 9; t++) {
      const [x0, x1] = [b.data[2 * t], b.data[2 * t + 1]];
      want.push(x0 * 1 + x1 * 3, x0 * 2 + x1 * 4);
    }
    expectClose(r2, nd([3, 3, 2], want));
  });

  it("batched with transposeB (the q·kᵀ of attention)", () => {
    const q = randn([2, 3, 4], 3);
    const k = randn([2, 5, 4], 4);
    const g = build((m) =>
      p.matmul(m.input("q", "f32", [2, 3, 4]), m.input("k", "f32", [2, 5, 4]), {
        transposeB: true,
      }),
    );
    const [r] = exec(g, { q, k });
    expect(r.shape).toEqual([2, 3, 5]);
    for (let h = 0; h < 2; h++)
      for (let i = 0; i < 3; i++)
        for (let j = 0; j < 5; j++) {
          let s = 0;
          for (let d = 0; d < 4; d++)
            s += q.data[(h * 3 + i) * 4 + d] * k.data[(h * 5 + j) * 4 + d];
          expect(r.data[(h * 3 + i) * 5 + j]).toBeCloseTo(s, 14);
        }
  });

  it("works on symbolic dims", () => {
    const g = build((m) => p.matmul(m.input("x", "f32", ["T", 2]), m.param("w", [2, 1])));
    expect(g.nodes.getNodeAttributes("matmul").type.shape).toEqual(["T", 1]);
    const [r] = exec(g, { x: nd([3, 2], [1, 2, 3, 4, 5, 6]) }, { w: nd([2, 1], [1, -1]) });
    expectClose(r, nd([3, 1], [-1, -1, -1]));
  });

  it("refuses mismatched inner dims and batch dims", () => {
    const m = new ModelBuilder("t");
    const e = kilnError(
      () => p.matmul(m.input("a", "f32", [2, 3, 4]), m.input("b", "f32", [5, 4, 2])),
      "dsl",
    );
    expect(e.detail).toBe("matmul: [2,3,4] × [5,4,2]: batch dims differ");
    const v = m.input("v", "f32", [4]);
    expect(kilnError(() => p.matmul(v, v), "dsl").detail).toBe(
      "matmul: [4] × [4]: operands need rank ≥ 2",
    );
  });
});

describe("structure", () => {
  it("transpose permutes axes: out[k,i,j] = x[i,j,k]", () => {
    const x = randn([2, 3, 4], 5);
    const r = on([2, 3, 4], Array.from(x.data), (t) => p.transpose(t, [2, 0, 1]));
    expect(r.shape).toEqual([4, 2, 3]);
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 3; j++)
        for (let k = 0; k < 4; k++)
          expect(r.data[(k * 2 + i) * 3 + j]).toBe(x.data[(i * 3 + j) * 4 + k]);
    expectClose(
      on([2, 3], [1, 2, 3, 4, 5, 6], (t) => p.transpose(t, [1, 0])),
      nd([3, 2], [1, 4, 2, 5, 3, 6]),
    );
  });

  it("reshape keeps row-major order, with symbolic dims", () => {
    const g = build((m) => {
      const x = m.input("x", "f32", ["T", 6]);
      const y = p.reshape(x, ["T", 2, 3]);
      return [y, p.reshape(y, [3, "T", 2])];
    });
    expect(g.nodes.getNodeAttributes("reshape_1").type.shape).toEqual([3, "T", 2]);
    const data = Array.from({ length: 12 }, (_, i) => i);
    const [y, z] = exec(g, { x: nd([2, 6], data) });
    expectClose(y, nd([2, 2, 3], data));
    expectClose(z, nd([3, 2, 2], data));
    const m = new ModelBuilder("t");
    const e = kilnError(() => p.reshape(m.input("x", "f32", ["T", 6]), ["S", 6]), "dsl");
    expect(e.detail).toBe("reshape: cannot reshape [T,6] to [S,6]: sizes differ");
  });

  it("slice takes [start, start+size) along one axis; negative axes count from the end", () => {
    const x = Array.from({ length: 12 }, (_, i) => i); // [3,4]
    expectClose(
      on([3, 4], x, (t) => p.slice(t, 1, 1, 2)),
      nd([3, 2], [1, 2, 5, 6, 9, 10]),
    );
    expectClose(
      on([3, 4], x, (t) => p.slice(t, -1, 3, 1)),
      nd([3, 1], [3, 7, 11]),
    );
    expectClose(
      on([3, 4], x, (t) => p.slice(t, 0, 2, 1)),
      nd([1, 4], [8, 9, 10, 11]),
    );
    expectClose(
      on([3, 4], x, (t) => p.slice(t, 0, 1, 0)),
      nd([0, 4], []),
    );
    const m = new ModelBuilder("t");
    expect(kilnError(() => p.slice(m.input("x", "f32", [3, 4]), 1, 3, 2), "dsl").detail).toBe(
      "slice: [3, 5) is outside axis 1 of [3,4]",
    );
  });

  it("slice past a symbolic axis's bound length is an input error at run time", () => {
    const g = build((m) => p.slice(m.input("x", "f32", ["T", 2]), 0, 1, 3));
    expectClose(
      exec(g, { x: nd([4, 2], [0, 1, 2, 3, 4, 5, 6, 7]) })[0],
      nd([3, 2], [2, 3, 4, 5, 6, 7]),
    );
    const e = kilnError(() => exec(g, { x: nd([2, 2], [0, 1, 2, 3]) }), "input");
    expect(e.where).toContain("%slice");
  });

  it("slice with a negative start counts from the end, also of a symbolic axis", () => {
    const x = Array.from({ length: 12 }, (_, i) => i); // [3,4]
    expectClose(
      on([3, 4], x, (t) => p.slice(t, 0, -1, 1)),
      nd([1, 4], [8, 9, 10, 11]),
    );
    expectClose(
      on([3, 4], x, (t) => p.slice(t, 1, -3, 2)),
      nd([3, 2], [1, 2, 5, 6, 9, 10]),
    );
    const g = build((m) => p.slice(m.input("x", "f32", ["T", 2]), 0, -1, 1));
    expect(g.nodes.getNodeAttributes("slice").type.shape).toEqual([1, 2]);
    for (const t of [1, 3])
      expectClose(
        exec(g, { x: nd([t, 2], x.slice(0, 2 * t)) })[0],
        nd([1, 2], [2 * t - 2, 2 * t - 1]),
      );
    const bad = (shape: (number | string)[], start: number, size: number) => {
      const m = new ModelBuilder("t");
      return kilnError(() => p.slice(m.input("x", "f32", shape), 0, start, size), "dsl").detail;
    };
    expect(bad([3, 4], -1, 2)).toBe("slice: [-1, 1) is outside axis 0 of [3,4]"); // past the end
    expect(bad([3, 4], -4, 1)).toBe("slice: [-4, -3) is outside axis 0 of [3,4]"); // before 0
    expect(bad(["T", 4], -1, 2)).toBe("slice: [-1, 1) is outside axis 0 of [T,4]");
    // Before the start of a symbolic axis that turns out too short: an input error at run time.
    const g2 = build((mm) => p.slice(mm.input("x", "f32", ["T", 2]), 0, -2, 1));
    expect(kilnError(() => exec(g2, { x: nd([1, 2], [0, 1]) }), "input").where).toContain("%slice");
  });

  it("gather picks rows: (table[V,C], ids[..]) → [..ids, C]", () => {
    const g = build((m) => p.gather(m.param("table", [4, 2]), m.input("ids", "i32", [2, 2])));
    const table = nd([4, 2], [0, 1, 10, 11, 20, 21, 30, 31]);
    const [r] = exec(g, { ids: nd([2, 2], [3, 0, 1, 1]) }, { table });
    expectClose(r, nd([2, 2, 2], [30, 31, 0, 1, 10, 11, 10, 11]));
  });

  it("gather with an index outside the table is an input error naming the node", () => {
    const m = new ModelBuilder("t");
    const out = p.gather(m.param("table", [4, 2]), m.input("ids", "i32", [2]), "tok_emb");
    const g = m.finish([out]);
    const table = nd([4, 2], new Array(8).fill(0));
    for (const bad of [4, -1, 1.5, NaN]) {
      const e = kilnError(() => exec(g, { ids: nd([2], [0, bad]) }, { table }), "input");
      expect(e.where).toContain("%tok_emb");
      expect(e.where).toMatch(/ops\.test\.ts:\d+/); // the DSL line that made the node
      expect(e.detail).toContain(`index ${bad}`);
      expect(e.detail).toContain("4 rows");
    }
  });
});

describe("positional encoding", () => {
  it("sinusoidal matches PE(p,2i) = sin(p/10000^(2i/d)), PE(p,2i+1) = cos(…)", () => {
    const d = 8;
    const g = build((m) => p.sinusoidal(p.range(m.input("x", "f32", ["T"]), "T", 2), d));
    const [r] = exec(g, { x: nd([5], [0, 0, 0, 0, 0]) });
    expect(r.shape).toEqual([5, d]);
    for (let t = 0; t < 5; t++) {
      const pos = t + 2;
      for (let i = 0; i < d / 2; i++) {
        const angle = pos / Math.pow(10000, (2 * i) / d);
        expect(r.data[t * d + 2 * i]).toBeCloseTo(Math.sin(angle), 14);
        expect(r.data[t * d + 2 * i + 1]).toBeCloseTo(Math.cos(angle), 14);
      }
    }
  });

  it("sinusoidal refuses an odd dim and non-i32 positions", () => {
    const m = new ModelBuilder("t");
    const pos = p.range(m.input("x", "f32", ["T"]), "T");
    expect(kilnError(() => p.sinusoidal(pos, 7), "dsl").detail).toBe(
      "sinusoidal: dim 7 must be a positive even number",
    );
    expect(kilnError(() => p.sinusoidal(m.input("f", "f32", [3]), 4), "dsl").detail).toContain(
      "must be i32[T]",
    );
  });
});

describe("softmax", () => {
  const softmaxRow = (xs: readonly number[]) => {
    const mx = Math.max(...xs);
    const e = xs.map((x) => Math.exp(x - mx));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  };

  it("normalizes along the given axis", () => {
    const x = [1, 2, 3, 0, 0, 0];
    expectClose(
      on([2, 3], x, (t) => p.softmax(t, -1)),
      nd([2, 3], [...softmaxRow([1, 2, 3]), 1 / 3, 1 / 3, 1 / 3]),
    );
    const cols = on([2, 3], x, (t) => p.softmax(t, 0));
    const c = [softmaxRow([1, 0]), softmaxRow([2, 0]), softmaxRow([3, 0])];
    expectClose(cols, nd([2, 3], [c[0][0], c[1][0], c[2][0], c[0][1], c[1][1], c[2][1]]));
  });

  it("rows of very large numbers give the right finite probabilities", () => {
    const r = on([4], [10000, 10001, 10002, 10003], (t) => p.softmax(t));
    expectClose(
      r,
      [0.03205860328008499, 0.08714431874203257, 0.23688281808991013, 0.6439142598879722],
      1e-15,
    );
    const neg = on([4], [-10000, -10001, -10002, -10003], (t) => p.softmax(t));
    expectClose(
      neg,
      [0.6439142598879722, 0.23688281808991013, 0.08714431874203257, 0.03205860328008499],
      1e-15,
    );
  });

  it("a fully masked row gives zeros, never NaN", () => {
    // Tq = 3 > Tk = 1 (bottom-right aligned): query 0 and 1 see no key at all.
    const r = on([3, 1], [5, 6, 7], (t) => p.softmax(p.causalMask(t)));
    expectClose(r, nd([3, 1], [0, 0, 1]));
    expect(r.data.some(Number.isNaN)).toBe(false);
  });

  it("masked_fill then softmax: a fully masked row is zeros, and NaN or 1e10 under the mask never leaks", () => {
    const g = build((m) => {
      const x = m.input("x", "f32", [3, 4]);
      return p.softmax(p.maskedFill(x, m.input("mask", "i32", [3, 4]), -Infinity));
    });
    const x = nd([3, 4], [1, NaN, 1e10, 2, NaN, Infinity, 1e10, -Infinity, 0, 0, 1e10, 0]);
    const mask = nd([3, 4], [0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 0]);
    const [r] = exec(g, { x, mask });
    const [a, b] = softmaxRow([1, 2]);
    expectClose(r, nd([3, 4], [a, 0, 0, b, 0, 0, 0, 0, 1 / 3, 1 / 3, 0, 1 / 3]), 1e-15);
    expect(r.data.every((v) => Number.isFinite(v))).toBe(true);
  });

  it("softmax of a row holding −∞ gives those positions exactly 0", () => {
    const r = on([3], [-Infinity, 0, -Infinity], (t) => p.softmax(t));
    expectClose(r, [0, 1, 0]);
  });
});

describe("masks", () => {
  it("causal_mask with Tq = Tk hides keys after the query", () => {
    const r = on([3, 3], new Array(9).fill(1), (t) => p.causalMask(t));
    const I = -Infinity;
    expectClose(r, nd([3, 3], [1, I, I, 1, 1, I, 1, 1, 1]));
  });

  it("causal_mask with Tq < Tk is bottom-right aligned: key j hidden when j > i + (Tk − Tq)", () => {
    const [tq, tk] = [2, 5];
    const r = on([2, tq, tk], new Array(2 * tq * tk).fill(1), (t) => p.causalMask(t));
    for (let b = 0; b < 2; b++)
      for (let i = 0; i < tq; i++)
        for (let j = 0; j < tk; j++)
          expect(r.data[(b * tq + i) * tk + j]).toBe(j > i + (tk - tq) ? -Infinity : 1);
    // query 0 sees keys 0..3: the last query sees every key (a KV cache of 3 past tokens + 2 new)
    expect(Array.from(r.data.slice(0, tk))).toEqual([1, 1, 1, 1, -Infinity]);
  });

  it("causal_mask with Tq > Tk masks only within its own batch entry", () => {
    // Regression: rows whose first hidden key is below 0 wrote −∞ into the previous batch entry.
    for (const [tq, tk] of [
      [4, 1],
      [5, 2],
      [3, 1],
    ]) {
      const n = 3 * tq * tk;
      const r = on(
        [3, tq, tk],
        Array.from({ length: n }, (_, i) => i),
        (t) => p.causalMask(t),
      );
      for (let b = 0; b < 3; b++)
        for (let i = 0; i < tq; i++)
          for (let j = 0; j < tk; j++) {
            const at = (b * tq + i) * tk + j;
            expect(r.data[at], `b=${b} i=${i} j=${j}`).toBe(j > i + (tk - tq) ? -Infinity : at);
          }
    }
  });

  it("masked_fill broadcasts the mask and writes value where it is non-zero", () => {
    const g = build((m) =>
      p.maskedFill(m.input("x", "f32", [2, 3]), m.input("pad", "f32", [3]), -5),
    );
    const [r] = exec(g, { x: nd([2, 3], [1, 2, 3, 4, 5, 6]), pad: nd([3], [0, 1, 0.5]) });
    expectClose(r, nd([2, 3], [1, -5, -5, 4, -5, -5]));
    const m = new ModelBuilder("t");
    const e = kilnError(
      () => p.maskedFill(m.input("x", "f32", [3]), m.input("mk", "f32", [2, 3]), 0),
      "dsl",
    );
    expect(e.detail).toBe("masked_fill: mask [2,3] must broadcast to [3]");
  });
});

describe("normalization and reductions", () => {
  it("layer_norm matches a direct computation over the last axis", () => {
    const x = randn([3, 5], 7, 3);
    const gamma = randn([5], 8);
    const beta = randn([5], 9);
    const eps = 1e-5;
    const g = build((m) =>
      p.layerNormOp(m.input("x", "f32", [3, 5]), m.param("g", [5]), m.param("b", [5]), eps),
    );
    const [r] = exec(g, { x }, { g: gamma, b: beta });
    const want: number[] = [];
    for (let i = 0; i < 3; i++) {
      const row = Array.from(x.data.slice(i * 5, i * 5 + 5));
      const mu = row.reduce((a, b) => a + b) / 5;
      const v = row.reduce((a, b) => a + (b - mu) ** 2, 0) / 5; // biased variance, as torch
      row.forEach((xv, k) =>
        want.push(((xv - mu) / Math.sqrt(v + eps)) * gamma.data[k] + beta.data[k]),
      );
    }
    expectClose(r, nd([3, 5], want), 1e-13);
  });

  it("layer_norm of a constant row is β (eps keeps it finite)", () => {
    const g = build((m) =>
      p.layerNormOp(m.input("x", "f32", [1, 3]), m.param("g", [3]), m.param("b", [3]), 1e-5),
    );
    const [r] = exec(
      g,
      { x: nd([1, 3], [7, 7, 7]) },
      { g: nd([3], [2, 2, 2]), b: nd([3], [1, 2, 3]) },
    );
    expectClose(r, nd([1, 3], [1, 2, 3]));
  });

  it("layer_norm refuses a weight of the wrong width and a non-positive eps", () => {
    const m = new ModelBuilder("t");
    const x = m.input("x", "f32", ["T", 4]);
    const e = kilnError(() => p.layerNormOp(x, m.param("g", [3]), m.param("b", [4]), 1e-5), "dsl");
    expect(e.detail).toBe("layer_norm: weight f32[3] must be f32[4] to normalize [T,4]");
    kilnError(() => p.layerNormOp(x, m.param("g4", [4]), m.param("b", [4]), 0), "dsl");
  });

  it("reduce_sum and reduce_mean keep the reduced axis with size 1", () => {
    const x = [1, 2, 3, 4, 5, 6]; // [2,3]
    expectClose(
      on([2, 3], x, (t) => p.sum(t, 0)),
      nd([1, 3], [5, 7, 9]),
    );
    expectClose(
      on([2, 3], x, (t) => p.sum(t, -1)),
      nd([2, 1], [6, 15]),
    );
    expectClose(
      on([2, 3], x, (t) => p.mean(t, 0)),
      nd([1, 3], [2.5, 3.5, 4.5]),
    );
    expectClose(
      on([2, 3], x, (t) => p.mean(t, 1)),
      nd([2, 1], [2, 5]),
    );
    const y = Array.from({ length: 24 }, (_, i) => i); // [2,3,4], middle axis
    const r = on([2, 3, 4], y, (t) => p.sum(t, 1));
    expectClose(r, nd([2, 1, 4], [12, 15, 18, 21, 48, 51, 54, 57]));
  });
});

describe("concat and the fused ops (defined by the ops they replace)", () => {
  const E = (s: string) => {
    const e = parseExpr(s);
    if (typeof e === "string") throw new Error(e);
    return e;
  };

  it("concat joins along an axis, with symbolic sizes summed", () => {
    const g = build((m) => {
      const a = m.input("a", "f32", [2, "T"]);
      const b = m.input("b", "f32", [2, 1]);
      const c = m.node("concat", { axis: 1 }, [a, b]);
      expect(c.type.shape).toEqual([2, "T+1"]);
      return c;
    });
    expectClose(
      exec(g, { a: nd([2, 2], [1, 2, 3, 4]), b: nd([2, 1], [5, 6]) })[0],
      nd([2, 3], [1, 2, 5, 3, 4, 6]),
    );
    const g0 = build((m) =>
      m.node("concat", { axis: 0 }, [m.param("p", [1, 2]), m.param("q", [2, 2])]),
    );
    expectClose(
      exec(g0, {}, { p: nd([1, 2], [1, 2]), q: nd([2, 2], [3, 4, 5, 6]) })[0],
      nd([3, 2], [1, 2, 3, 4, 5, 6]),
    );
  });

  it("map evaluates its expression over broadcast operands", () => {
    const g = build((m) =>
      m.node("map", { expr: E("gelu_tanh(add(mul($0, 2), $1))") }, [
        m.input("x", "f32", [2, 2]),
        m.input("y", "f32", [2]),
      ]),
    );
    const gt = (x: number) =>
      0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    expectClose(
      exec(g, { x: nd([2, 2], [1, 2, 3, 4]), y: nd([2], [0.5, -1]) })[0],
      nd([2, 2], [gt(2.5), gt(3), gt(6.5), gt(7)]),
    );
  });

  it("matmul_epilogue finishes the accumulator with the expression", () => {
    const g = build((m) =>
      m.node("matmul_epilogue", { transposeB: false, expr: E("add(relu(add(acc, $0)), $1)") }, [
        m.input("a", "f32", [1, 2]),
        m.input("b", "f32", [2, 2]),
        m.input("bias", "f32", [2]),
        m.input("res", "f32", [1, 2]),
      ]),
    );
    // a·b = [1·1+2·3, 1·2+2·4] = [7, 10]; + bias [-8, 1] → [-1, 11]; relu → [0, 11]; + res [5, 5]
    const out = exec(g, {
      a: nd([1, 2], [1, 2]),
      b: nd([2, 2], [1, 2, 3, 4]),
      bias: nd([2], [-8, 1]),
      res: nd([1, 2], [5, 5]),
    });
    expectClose(out[0], nd([1, 2], [5, 16]));
  });

  it("layer_norm_map normalizes its prologue's value", () => {
    const g = build((m) =>
      m.node("layer_norm_map", { eps: 1e-5, expr: E("add($0, $1)") }, [
        m.param("g", [2]),
        m.param("b", [2]),
        m.input("x", "f32", [1, 2]),
        m.input("y", "f32", [1, 2]),
      ]),
    );
    const inv = 1 / Math.sqrt(1 + 1e-5); // x + y = [1, 3]: mean 2, variance 1
    const out = exec(
      g,
      { x: nd([1, 2], [0, 1]), y: nd([1, 2], [1, 2]) },
      { g: nd([2], [1, 2]), b: nd([2], [0, 1]) },
    );
    expectClose(out[0], nd([1, 2], [-inv, 2 * inv + 1]));
  });

  it("scale_softmax scales, masks (causal and key mask) and normalizes; fully masked rows are zeros", () => {
    const g = build((m) =>
      m.node("scale_softmax", { scale: 2, causal: true }, [
        m.input("x", "f32", [2, 2]),
        m.input("mask", "f32", [2]),
      ]),
    );
    const out = exec(g, { x: nd([2, 2], [NaN, 1e10, 0.5, 1]), mask: nd([2], [1, 0]) })[0];
    // row 0: key 0 masked, key 1 causal-masked → zeros; row 1: key 0 masked → [0, 1]
    expectClose(out, nd([2, 2], [0, 0, 0, 1]));
    const h = build((m) =>
      m.node("scale_softmax", { scale: 1, causal: false }, [m.input("x", "f32", [4])]),
    );
    const big = exec(h, { x: nd([4], [10000, 10001, 10002, 10003]) })[0];
    const w = [0, 1, 2, 3].map((i) => Math.exp(i - 3));
    const s = w.reduce((a, b) => a + b);
    expectClose(
      big,
      nd(
        [4],
        w.map((v) => v / s),
      ),
    );
  });

  it("attention computes softmax(q·kᵀ·scale)·v per head on merged heads", () => {
    const g = build((m) =>
      m.node("attention", { heads: 2, scale: 0.5, causal: true }, [
        m.input("q", "f32", [2, 4]),
        m.input("k", "f32", [3, 4]),
        m.input("v", "f32", [3, 4]),
      ]),
    );
    const q = randn([2, 4], 1);
    const k = randn([3, 4], 2);
    const v = randn([3, 4], 3);
    const out = exec(g, { q, k, v })[0];
    const want = new Array<number>(8).fill(0);
    for (let h = 0; h < 2; h++)
      for (let i = 0; i < 2; i++) {
        const keys = [0, 1, 2].filter((j) => j <= i + 1); // Tk − Tq = 1
        const s = keys.map(
          (j) =>
            0.5 *
            [0, 1].reduce((a, d) => a + q.data[i * 4 + h * 2 + d] * k.data[j * 4 + h * 2 + d], 0),
        );
        const mx = Math.max(...s);
        const e = s.map((x) => Math.exp(x - mx));
        const z = e.reduce((a, b) => a + b);
        for (let d = 0; d < 2; d++)
          want[i * 4 + h * 2 + d] = keys.reduce(
            (a, j, n) => a + (e[n] / z) * v.data[j * 4 + h * 2 + d],
            0,
          );
      }
    expectClose(out, nd([2, 4], want));
  });
});
