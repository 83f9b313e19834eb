/** Runs the classifier on kiln's float64 reference interpreter, with seeded random weights:
 *
 *    npx tsx examples/classifier/run.ts
 *
 *  It builds the graph, makes a weight for every `param` node, classifies one padded review and
 *  shows that the padding is invisible: changing a padded token's id leaves the probabilities
 *  bit-for-bit the same. The exports are the pieces a test (or your own script) needs. */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildGraph } from "../../compiler/dsl/index.ts";
import { fail } from "../../compiler/errors.ts";
import { nodeData, type Graph } from "../../compiler/ir/graph.ts";
import { interpret } from "../../compiler/ir/interpret.ts";
import { ndarray, type NDArray } from "../../compiler/ir/ndarray.ts";
import classifier, { type ClassifierConfig } from "./model.ts";

export type Weights = ReadonlyMap<string, NDArray>;

export interface Prediction {
  readonly logits: readonly number[]; // (K)
  readonly probs: readonly number[]; // (K), sums to 1
}

export const PAD = 0; // the padding token's id
export const LABELS = ["negative", "positive"];

export function buildClassifier(config: Partial<ClassifierConfig> = {}): Graph {
  return buildGraph(classifier, config);
}

/** mulberry32: a tiny seeded generator of uniform numbers in [0, 1). */
function uniform(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The operand slot a param fills in a layer_norm (1 = gain, 2 = bias), if it feeds one. */
function layerNormSlot(graph: Graph, key: string): number | undefined {
  let slot: number | undefined;
  graph.nodes.forEachOutEdge(key, (_edge, attr, _source, target) => {
    if (nodeData(graph, target).op === "layer_norm") slot = attr.slot;
  });
  return slot;
}

/** A weight for every `param` node of the graph, the same for the same seed: layer-norm gains 1
 *  and biases 0 (as PyTorch initializes them), every other tensor uniform in ±1/√(last dim). */
export function randomWeights(graph: Graph, seed = 0): Map<string, NDArray> {
  const next = uniform(seed);
  const weights = new Map<string, NDArray>();
  graph.nodes.forEachNode((key, node) => {
    if (node.op !== "param") return;
    const shape = node.type.shape.map((d) => {
      if (typeof d !== "number")
        fail("checkpoint", node.attrs.name, `symbolic dim ${d} in a weight`);
      return d;
    });
    const w = ndarray(shape);
    const slot = layerNormSlot(graph, key);
    const bound = 1 / Math.sqrt(shape[shape.length - 1] || 1);
    for (let i = 0; i < w.data.length; i++)
      w.data[i] = slot === 1 ? 1 : slot === 2 ? 0 : (2 * next() - 1) * bound;
    weights.set(node.attrs.name, w);
  });
  return weights;
}

/** Right-pads token ids to `length` with PAD; the mask is 1 on real tokens, 0 on padding. */
export function pad(ids: readonly number[], length: number): { tokens: number[]; mask: number[] } {
  if (ids.length > length) fail("input", "pad", `${ids.length} tokens do not fit in ${length}`);
  const fill = length - ids.length;
  return {
    tokens: [...ids, ...Array<number>(fill).fill(PAD)],
    mask: [...ids.map(() => 1), ...Array<number>(fill).fill(0)],
  };
}

/** One forward pass on the reference interpreter: class logits and probabilities. */
export function classify(
  graph: Graph,
  weights: Weights,
  tokens: readonly number[],
  mask: readonly number[],
): Prediction {
  if (mask.length !== tokens.length)
    fail("input", "attention_mask", `${mask.length} entries for ${tokens.length} tokens`);
  // The mean pool divides by the number of real tokens; with none it would be 0/0.
  if (!mask.some((m) => m === 1)) fail("input", "attention_mask", "marks no real token");
  const T = tokens.length;
  const inputs = new Map([
    ["tokens", ndarray([T], tokens)], // (T)
    ["attention_mask", ndarray([T], mask)], // (T)
  ]);
  const [logits, probs] = interpret(graph, { inputs, param: (name) => weights.get(name) }); // (1, K)
  return { logits: [...logits.data], probs: [...probs.data] };
}

const show = (p: Prediction): string =>
  p.probs.map((q, i) => `${LABELS[i] ?? `class ${i}`} ${q.toFixed(6)}`).join("   ");

/** The largest difference between two predictions' probabilities. */
const maxDiff = (a: Prediction, b: Prediction): number =>
  Math.max(...a.probs.map((q, i) => Math.abs(q - b.probs[i])));

function main(): void {
  const graph = buildClassifier();
  const weights = randomWeights(graph, 42);
  let count = 0;
  for (const w of weights.values()) count += w.data.length;
  console.log(`classifier: ${weights.size} weight tensors, ${count} parameters (seed 42)`);

  const review = [17, 254, 981, 3, 560]; // five token ids of an imaginary vocabulary
  const { tokens, mask } = pad(review, 8);
  console.log(`tokens         ${JSON.stringify(tokens)}`);
  console.log(`attention_mask ${JSON.stringify(mask)}`);
  const base = classify(graph, weights, tokens, mask);
  console.log(`logits         ${base.logits.map((x) => x.toFixed(6)).join(", ")}`);
  console.log(`probabilities  ${show(base)}`);

  const changed = [...tokens];
  changed[6] = 999; // a padded position gets a different id
  const after = classify(graph, weights, changed, mask);
  console.log(`\npadded token 6: ${PAD} → 999`);
  console.log(`probabilities  ${show(after)}   (max |Δ| = ${maxDiff(base, after)})`);

  const unpadded = classify(
    graph,
    weights,
    review,
    review.map(() => 1),
  );
  console.log(`no padding     ${show(unpadded)}   (max |Δ| = ${maxDiff(base, unpadded)})`);

  // Without the mask every position counts, and the same change moves the output.
  const all = tokens.map(() => 1);
  const noMask = maxDiff(
    classify(graph, weights, tokens, all),
    classify(graph, weights, changed, all),
  );
  console.log(
    `\nwith an all-ones mask the same change moves the output by ${noMask.toExponential(3)}`,
  );
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
