/** Random inputs and weights for any graph, and an equivalence check between two graphs: the
 *  oracle every pass test uses ("optimized ≡ unoptimized" on random numbers). */
import { expect } from "vitest";
import { nodeData, operands, type Graph } from "../../compiler/ir/graph.ts";
import { interpret, type Feeds } from "../../compiler/ir/interpret.ts";
import { ndarray, type NDArray } from "../../compiler/ir/ndarray.ts";
import { evalDim, type Bindings } from "../../compiler/ir/shape.ts";
import { seededRandom } from "../../runtime/generate.ts";

function concrete(g: Graph, key: string, b: Bindings): number[] {
  return nodeData(g, key).type.shape.map((d) => {
    const v = evalDim(d, b);
    if (v === undefined) throw new Error(`dim ${d} of %${key} is not bound`);
    return v;
  });
}

/** Seeded feeds: params ~ N(0, 0.5) (layer-norm gains near 1), f32 inputs likewise, i32 inputs in
 *  range of the table they index (else 0/1 masks). `bindings` gives each symbolic dim a size. */
export function randomFeeds(g: Graph, bindings: Bindings, seed = 1): Feeds {
  const rand = seededRandom(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()) * 0.5;
  const inputs = new Map<string, NDArray>();
  for (const k of g.inputs) {
    const n = nodeData(g, k);
    const shape = concrete(g, k, bindings);
    const size = shape.reduce((a, b) => a * b, 1);
    let data: number[];
    if (n.type.dtype === "i32") {
      let rows = 2;
      g.nodes.forEachOutNeighbor(k, (u) => {
        const un = nodeData(g, u);
        if (un.op === "gather" && operands(g, u)[1] === k)
          rows = nodeData(g, operands(g, u)[0]).type.shape[0] as number;
      });
      data = Array.from({ length: size }, () => Math.floor(rand() * rows));
    } else data = Array.from({ length: size }, normal);
    inputs.set(n.op === "input" ? n.attrs.name : k, ndarray(shape, data));
  }
  const params = new Map<string, NDArray>();
  g.nodes.forEachNode((k, n) => {
    if (n.op !== "param") return;
    const shape = concrete(g, k, bindings);
    const size = shape.reduce((a, b) => a * b, 1);
    const gain = /weight$/.test(n.attrs.name) && shape.length === 1 ? 1 : 0;
    params.set(
      n.attrs.name,
      ndarray(
        shape,
        Array.from({ length: size }, () => gain + normal()),
      ),
    );
  });
  return { inputs, param: (name) => params.get(name) };
}

/** max over elements of |a − b| / max(1, |b|) */
export function relError(a: NDArray, b: NDArray): number {
  let worst = 0;
  for (let i = 0; i < b.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]) / Math.max(1, Math.abs(b.data[i]));
    worst = Number.isNaN(d)
      ? Object.is(a.data[i], b.data[i]) || (Number.isNaN(a.data[i]) && Number.isNaN(b.data[i]))
        ? worst
        : Infinity
      : Math.max(worst, d);
  }
  return worst;
}

/** Both graphs give the same outputs (within `tol`, float64) on the same random feeds. */
export function expectEquivalent(
  optimized: Graph,
  original: Graph,
  bindings: Bindings,
  tol = 1e-9,
  seed = 1,
): void {
  const feeds = randomFeeds(original, bindings, seed);
  const want = interpret(original, feeds);
  const got = interpret(optimized, feeds);
  expect(got.length).toBe(want.length);
  got.forEach((o, i) => {
    expect(o.shape).toEqual(want[i].shape);
    expect(relError(o, want[i])).toBeLessThanOrEqual(tol);
  });
}
