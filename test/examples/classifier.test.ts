/** The classifier example: it builds and verifies, its probabilities are a distribution, padding
 *  cannot influence it, and the IR that `kiln inspect` prints reads back unchanged. */
import { describe, expect, it } from "vitest";
import { KilnError } from "../../compiler/errors.ts";
import { buildGraph } from "../../compiler/dsl/index.ts";
import { nodeData } from "../../compiler/ir/graph.ts";
import { interpret } from "../../compiler/ir/interpret.ts";
import { ndarray } from "../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../compiler/ir/parse.ts";
import { printGraph } from "../../compiler/ir/print.ts";
import { problems } from "../../compiler/ir/verify.ts";
import { formatType } from "../../compiler/ir/shape.ts";
import classifier from "../../examples/classifier/model.ts";
import { buildClassifier, classify, pad, randomWeights } from "../../examples/classifier/run.ts";

const graph = buildClassifier({ layers: 1 });
const weights = randomWeights(graph, 7);
const review = [17, 254, 981, 3, 560];

describe("classifier example", () => {
  it("builds with its defaults and verifies", () => {
    const g = buildGraph(classifier);
    expect(problems(g)).toEqual([]);
    expect(g.inputs.map((k) => formatType(nodeData(g, k).type))).toEqual(["i32[T]", "f32[T]"]);
    expect(g.outputs.map((k) => formatType(nodeData(g, k).type))).toEqual(["f32[1,2]", "f32[1,2]"]);
  });

  it("has a weight for every param, deterministic per seed", () => {
    const params = graph.nodes.filterNodes((_k, n) => n.op === "param").length;
    expect(weights.size).toBe(params);
    const again = randomWeights(graph, 7);
    for (const [name, w] of weights)
      expect(again.get(name)?.data.every((x, i) => x === w.data[i])).toBe(true);
  });

  it("gives probabilities that sum to 1 and are the softmax of the logits", () => {
    const { tokens, mask } = pad(review, 8);
    const p = classify(graph, weights, tokens, mask);
    expect(p.probs).toHaveLength(2);
    expect(p.probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    const z = p.logits.map(Math.exp);
    p.probs.forEach((q, i) => expect(q).toBeCloseTo(z[i] / (z[0] + z[1]), 12));
  });

  it("ignores padded tokens: their ids do not change the output", () => {
    const { tokens, mask } = pad(review, 8);
    const base = classify(graph, weights, tokens, mask);
    for (const [at, id] of [
      [5, 999],
      [6, 1],
      [7, 500],
    ]) {
      const changed = [...tokens];
      changed[at] = id;
      expect(classify(graph, weights, changed, mask)).toEqual(base);
    }
  });

  it("gives the same answer padded and unpadded", () => {
    const { tokens, mask } = pad(review, 12);
    const padded = classify(graph, weights, tokens, mask);
    const plain = classify(graph, weights, review, [1, 1, 1, 1, 1]);
    plain.probs.forEach((q, i) => expect(padded.probs[i]).toBeCloseTo(q, 12));
  });

  it("does see those positions when the mask marks them real", () => {
    const { tokens } = pad(review, 8);
    const all = tokens.map(() => 1);
    const changed = [...tokens];
    changed[6] = 999;
    const a = classify(graph, weights, tokens, all);
    const b = classify(graph, weights, changed, all);
    expect(Math.abs(a.probs[0] - b.probs[0])).toBeGreaterThan(1e-6);
  });

  it("also masks with sinusoidal positions and several layers", () => {
    const g = buildClassifier({ positions: "sinusoidal", layers: 2 });
    const w = randomWeights(g, 3);
    expect(w.has("pos_emb.weight")).toBe(false);
    const { tokens, mask } = pad(review, 7);
    const changed = [...tokens];
    changed[5] = 42;
    expect(classify(g, w, changed, mask)).toEqual(classify(g, w, tokens, mask));
  });

  it("rejects a mask with no real token", () => {
    expect(() => classify(graph, weights, [1, 2], [0, 0])).toThrow(KilnError);
  });

  it("rejects a sequence longer than max_len", () => {
    const { tokens, mask } = pad([1], 129);
    expect(() => classify(graph, weights, tokens, mask)).toThrow(/max_len/);
  });

  it("reports a config whose heads do not divide the width at the model's line", () => {
    expect(() => buildGraph(classifier, { heads: 5 })).toThrow(
      /examples\/classifier\/model\.ts:\d+: width \(64\) must be divisible by heads \(5\)/,
    );
  });

  for (const locations of [false, true])
    it(`prints IR that parses back identically${locations ? " (with --locations)" : ""}`, () => {
      const text = printGraph(graph, { locations });
      const back = parseGraph(text, "classifier.ir");
      expect(printGraph(back, { locations })).toBe(text);
      expect(back.inputs).toEqual(graph.inputs);
      expect(back.outputs).toEqual(graph.outputs);
      expect([...back.bounds]).toEqual([...graph.bounds]);
    });

  it("runs the parsed-back IR to the same numbers", () => {
    const back = parseGraph(printGraph(graph));
    const { tokens, mask } = pad(review, 8);
    const inputs = new Map([
      ["tokens", ndarray([8], tokens)],
      ["attention_mask", ndarray([8], mask)],
    ]);
    const param = (name: string) => weights.get(name);
    const [, probs] = interpret(back, { inputs, param });
    expect([...probs.data]).toEqual(classify(graph, weights, tokens, mask).probs);
  });
});
