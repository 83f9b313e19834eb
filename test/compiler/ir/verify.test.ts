/** The verifier: passes on both reference models, and names the node and the cause for each way a
 *  graph can be ill-formed. Bad graphs are made by editing a copy of a good one, since neither the
 *  builder nor the parser will produce them. */
import { describe, expect, it } from "vitest";
import { buildGraph } from "../../../compiler/dsl/model.ts";
import * as p from "../../../compiler/dsl/primitives.ts";
import { nodeData, type Graph, type NodeData } from "../../../compiler/ir/graph.ts";
import { problems, verify } from "../../../compiler/ir/verify.ts";
import gpt2 from "../../../models/gpt2.ts";
import seq2seq from "../../../models/seq2seq.ts";
import { build, kilnError } from "../util.ts";

/** x: f32[2,3]; w: f32[3,4]; mm = matmul(x, w); t = transpose(mm); s = slice(t); out = softmax(s). */
function small(): Graph {
  return build((m) => {
    const x = m.input("x", "f32", [2, 3]);
    const mm = p.matmul(x, m.param("w", [3, 4]), { hint: "mm" });
    const t = p.transpose(mm, [1, 0], "t");
    const s = p.slice(t, 0, 1, 2, "s");
    return p.softmax(s, -1, "out");
  }, "small");
}

/** A copy of g with node `key`'s data edited. */
function editNode(g: Graph, key: string, f: (n: NodeData) => object): Graph {
  const nodes = g.nodes.copy();
  nodes.replaceNodeAttributes(key, f(nodeData(g, key)) as NodeData);
  return { ...g, nodes };
}

function only(g: Graph): string {
  const ps = problems(g);
  expect(ps).toHaveLength(1);
  return ps[0];
}

describe("verify", () => {
  it("passes on both reference models, at small and default configs", () => {
    for (const g of [
      buildGraph(gpt2, { vocab_size: 97, n_positions: 16, n_embd: 24, n_layer: 2, n_head: 3 }),
      buildGraph(gpt2),
      buildGraph(seq2seq, {
        emb_size: 24,
        nhead: 3,
        src_vocab_size: 41,
        tgt_vocab_size: 37,
        dim_feedforward: 40,
      }),
      buildGraph(seq2seq),
    ]) {
      expect(problems(g)).toEqual([]);
      expect(verify(g)).toBe(g);
    }
  });

  it("passes on the small graph it edits", () => {
    expect(problems(small())).toEqual([]);
  });

  it("catches a wrong recorded type, naming the node and its DSL line", () => {
    const g = editNode(small(), "t", (n) => ({ ...n, type: { dtype: "f32", shape: [2, 4] } }));
    const ps = problems(g);
    expect(ps[0]).toMatch(
      /^@small %t \(test\/compiler\/ir\/verify\.test\.ts:\d+\): recorded type f32\[2,4\] but transpose gives f32\[4,2\]$/,
    );
    // the slice below now sees [2,4] and slicing axis 0 at [1,3) no longer fits
    expect(ps[1]).toContain("@small %s");
    const dt = editNode(small(), "out", (n) => ({
      ...n,
      type: { dtype: "f16", shape: n.type.shape },
    }));
    expect(only(dt)).toContain("recorded type f16[2,2] but softmax gives f32[2,2]");
  });

  it("catches a wrong operand count, too few and too many", () => {
    const fewer = small();
    const nodes = fewer.nodes.copy();
    nodes.dropEdge(nodes.edges("w", "mm")[0]);
    expect(only({ ...fewer, nodes })).toBe(
      "@small %mm (" + nodeData(fewer, "mm").loc + "): matmul takes 2 operand(s), has 1",
    );
    const more = small();
    const n2 = more.nodes.copy();
    n2.addEdge("x", "out", { slot: 1 });
    expect(only({ ...more, nodes: n2 })).toContain("%out (");
    expect(problems({ ...more, nodes: n2 })[0]).toMatch(/softmax takes 1 operand\(s\), has 2$/);
  });

  it("catches a bad attribute, without crashing the type rule", () => {
    const bad = editNode(small(), "s", (n) => ({ ...n, attrs: { axis: 0, start: 0.5, size: 2 } }));
    expect(only(bad)).toMatch(/%s \(.*\): slice attribute start must be int$/);
    const str = editNode(small(), "mm", (n) => ({ ...n, attrs: { transposeB: "no" } }));
    expect(only(str)).toMatch(/matmul attribute transposeB must be bool$/);
    const perm = editNode(small(), "t", (n) => ({ ...n, attrs: { perm: [1, "0"] } }));
    expect(only(perm)).toMatch(/transpose attribute perm must be ints$/);
  });

  it("catches a missing attribute (regression: the type rule used to throw a TypeError)", () => {
    const g = editNode(small(), "t", (n) => ({ ...n, attrs: {} }));
    expect(only(g)).toMatch(/%t \(.*\): transpose attribute perm must be ints$/);
    const r = build((m) => p.reshape(m.input("x", "f32", [2, 3]), [3, 2], "r"));
    expect(only(editNode(r, "r", (n) => ({ ...n, attrs: {} })))).toMatch(
      /reshape attribute shape must be dims$/,
    );
    const e = kilnError(() => verify(g, "fuse-everything"), "ir");
    expect(e.where).toBe("@small");
    expect(e.detail).toMatch(/^verification failed after fuse-everything:\n {2}@small %t/);
  });

  it("catches an extra attribute", () => {
    const g = editNode(small(), "mm", (n) => ({ ...n, attrs: { transposeB: false, bias: true } }));
    expect(only(g)).toMatch(/%mm \(.*\): matmul has no attribute bias$/);
    const i = editNode(small(), "out", (n) => ({ ...n, attrs: { axis: 1, mask: "causal" } }));
    expect(only(i)).toMatch(/softmax has no attribute mask$/);
  });

  it("catches an unknown op", () => {
    const g = editNode(small(), "out", (n) => ({ ...n, op: "softmax2" }));
    expect(only(g)).toMatch(/%out \(.*\): unknown op softmax2$/);
  });

  it("catches an output that does not exist, and a graph with no outputs", () => {
    const g = small();
    expect(only({ ...g, outputs: ["out", "nope"] })).toBe("@small: output %nope does not exist");
    expect(only({ ...g, outputs: [] })).toBe("@small: the graph has no outputs");
  });

  it("catches an input node missing from the signature, and a signature entry that is not an input", () => {
    const g = small();
    expect(only({ ...g, inputs: [] })).toMatch(
      /^@small %x \(.*\): input node missing from the signature$/,
    );
    const ps = problems({ ...g, inputs: ["x", "w"] });
    expect(ps).toEqual(["@small: input %w is not an input node"]);
    expect(problems({ ...g, inputs: ["x", "ghost"] })).toEqual([
      "@small: input %ghost is not an input node",
    ]);
  });

  it("catches a cycle", () => {
    const g = small();
    const nodes = g.nodes.copy();
    nodes.addEdge("out", "mm", { slot: 2 });
    expect(problems({ ...g, nodes })).toEqual(["@small: the graph has a cycle"]);
  });

  it("lists every problem at once", () => {
    let g = editNode(small(), "mm", (n) => ({ ...n, attrs: { transposeB: false, extra: 1 } }));
    g = editNode(g, "out", (n) => ({ ...n, type: { dtype: "f32", shape: [9] } }));
    g = { ...g, outputs: ["out", "missing"] };
    const e = kilnError(() => verify(g), "ir");
    const lines = e.detail.split("\n");
    expect(lines).toHaveLength(4);
    expect(e.detail).toContain("matmul has no attribute extra");
    expect(e.detail).toContain("recorded type f32[9]");
    expect(e.detail).toContain("output %missing does not exist");
  });
});
