/** The artifact's own parts, with a stand-in kernel module (artifact-stand-in.ts): copying
 *  declarations out of kiln's files, the loader's spec, and the loader itself — weights by the
 *  checkpoint layout, the strict safetensors reader (the same errors as runtime/safetensors.ts,
 *  byte for byte), config.json checks, input checks, generate — run from a real model.js.
 *  End to end with the generated kernels: test/cli/compile.test.ts. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import fc from "fast-check";
import { ts } from "ts-morph";
import { beforeAll, describe, expect, it } from "vitest";
import { KilnError } from "../../../compiler/errors.ts";
import { add, buildGraph, defineModel, embed } from "../../../compiler/dsl/index.ts";
import type { Graph } from "../../../compiler/ir/graph.ts";
import { lower } from "../../../compiler/lower/lower.ts";
import { runPipeline } from "../../../compiler/passes/pipeline.ts";
import {
  inlineDeclarations,
  withoutExports,
} from "../../../compiler/codegen/ts/artifact/inline-source.ts";
import {
  literal,
  modelSource,
  transpile,
} from "../../../compiler/codegen/ts/artifact/model-source.ts";
import type { ArtifactSpec } from "../../../compiler/codegen/ts/artifact/runtime.ts";
import { artifactSpec, type ArtifactModel } from "../../../compiler/codegen/ts/artifact/spec.ts";
import gpt2, { type GPT2Config } from "../../../models/gpt2.ts";
import seq2seq, { type Seq2SeqConfig } from "../../../models/seq2seq.ts";
import classifier from "../../../examples/classifier/model.ts";
import { loadCheckpoint } from "../../../runtime/checkpoint.ts";
import { sample, seededRandom } from "../../../runtime/generate.ts";
import { parseSafetensors } from "../../../runtime/safetensors.ts";
import { writeSafetensors, type WritableTensor } from "../../../runtime/safetensors-write.ts";
import { randomTensors } from "../../../scripts/random-checkpoint.ts";
import { tempDir } from "../../helpers/cli.ts";
import { standInGreedy, standInKernels, type StandInOptions } from "./artifact-stand-in.ts";

const GPT2: GPT2Config = {
  vocab_size: 23,
  n_positions: 8,
  n_embd: 8,
  n_layer: 1,
  n_head: 2,
  layer_norm_epsilon: 1e-5,
};
const S2S: Seq2SeqConfig = {
  num_encoder_layers: 1,
  num_decoder_layers: 1,
  emb_size: 8,
  nhead: 2,
  src_vocab_size: 11,
  tgt_vocab_size: 13,
  dim_feedforward: 16,
  max_len: 5000,
};

// ── inline-source ───────────────────────────────────────────────────────────────────────────

describe("inlineDeclarations", () => {
  const a = {
    path: "a.ts",
    text: `/** The file's header. */
import { x } from "./x.ts";
/** Doubles. */
export function double(n: number): number { return twice(n); }
function twice(n: number): number { return n * 2; }
export const UNUSED = readFileSync("nope");
export type Shared = number;
export { double as again };
`,
  };
  const b = {
    path: "b.ts",
    text: `import { double } from "./a.ts";
type Shared = number;
export interface Box { readonly v: Shared }
export function boxed(n: number): Box { return { v: double(n) }; }
`,
  };

  it("keeps what the roots reach, in file order, exports only the given names", () => {
    const out = inlineDeclarations([a, b], ["boxed"], new Set(["boxed", "Box"]));
    expect(out).toBe(
      [
        "// from a.ts",
        "",
        "/** Doubles. */\nfunction double(n: number): number { return twice(n); }",
        "",
        "function twice(n: number): number { return n * 2; }",
        "",
        "type Shared = number;",
        "",
        "// from b.ts",
        "",
        "export interface Box { readonly v: Shared }",
        "",
        "export function boxed(n: number): Box { return { v: double(n) }; }",
      ].join("\n"),
    );
    expect(out).not.toContain("header");
    expect(out).not.toContain("readFileSync");
  });

  it("refuses two different declarations of one name, a statement run for effect, a missing root", () => {
    const c = { path: "c.ts", text: "type Shared = string;\n" };
    expect(() => inlineDeclarations([a, c], ["Shared"])).toThrow(/Shared is declared differently/);
    const d = { path: "d.ts", text: "export const a = 1;\nconsole.log(a);\n" };
    expect(() => inlineDeclarations([d], ["a"])).toThrow(/d.ts:2: only declarations/);
    expect(() => inlineDeclarations([a], ["nothing"])).toThrow(/nothing is declared in none/);
  });

  it("withoutExports: drops export keywords and lists; refuses imports and default exports", () => {
    expect(withoutExports({ path: "m", text: "export const a = 1;\nexport { a as b };\n" })).toBe(
      "const a = 1;\n\n",
    );
    expect(() => withoutExports({ path: "m", text: 'import x from "y";\n' })).toThrow(/imports/);
    expect(() => withoutExports({ path: "m", text: "export default 1;\n" })).toThrow(/default/);
  });
});

it("literal: one line when it fits, JavaScript line separators escaped", () => {
  expect(literal({ a: [1, 2], s: "x\u2028y\u2029" })).toBe('{"a":[1,2],"s":"x\\u2028y\\u2029"}');
  const long = literal({ list: Array.from({ length: 40 }, (_, i) => i * 1000) }, 60);
  expect(long.split("\n").length).toBeGreaterThan(2);
  expect(JSON.parse(long)).toEqual({ list: Array.from({ length: 40 }, (_, i) => i * 1000) });
});

// ── the spec ────────────────────────────────────────────────────────────────────────────────

function specOf(graph: Graph, model: ArtifactModel, maxDims?: Map<string, number>): ArtifactSpec {
  return artifactSpec(graph, lower(runPipeline(graph).graph), model, maxDims);
}

describe("artifactSpec", () => {
  it("GPT-2: token ids in [0, vocab), the context, the checkpoint layout and config", () => {
    const s = specOf(buildGraph(gpt2, GPT2), { kind: "gpt2", name: "gpt2", config: GPT2 });
    expect(s.inputs).toEqual([
      {
        name: "tokens",
        key: "tokens",
        dtype: "i32",
        phase: "step",
        length: "T",
        maxLength: 8,
        why: "the context length n_positions",
        vocab: 23,
      },
    ]);
    expect(s.noGenerate).toBeNull();
    expect(s.kvCache).toBe(true);
    expect(s.layout.stripPrefixes).toEqual(["transformer."]);
    expect(s.config.map((c) => c.key)).toContain("n_head");
    expect(s.output).toEqual({ name: "logits", shape: ["T", 23] });
  });

  it("seq2seq: srcTokens fed once per sequence, each with its own vocabulary", () => {
    const s = specOf(buildGraph(seq2seq, S2S), { kind: "seq2seq", name: "seq2seq", config: S2S });
    expect(s.inputs.map((i) => [i.key, i.phase, i.vocab, i.maxLength])).toEqual([
      ["srcTokens", "source", 11, 5000],
      ["tokens", "step", 13, 5000],
    ]);
    expect(s.noGenerate).toBeNull();
  });

  it("--seq-len tightens the context; a classifier's mask input is not token ids, so no generate", () => {
    const g = buildGraph(gpt2, GPT2);
    const s = specOf(g, { kind: "model", name: "gpt2", config: GPT2 }, new Map([["T", 5]]));
    expect([s.inputs[0].maxLength, s.inputs[0].why]).toEqual([
      5,
      "the length the artifact was compiled for (--seq-len)",
    ]);
    expect(s.layout).toEqual({ stripPrefixes: [], ignore: [] });
    expect(s.config).toEqual([]);
    const c = specOf(buildGraph(classifier, { layers: 1, width: 16, ffn: 32 }), {
      kind: "model",
      name: "classifier",
      config: {},
    });
    expect(c.inputs.map((i) => [i.key, i.dtype, i.vocab])).toEqual([
      ["tokens", "i32", 1000],
      ["attentionMask", "f32", null],
    ]);
    expect(c.noGenerate).toMatch(/generate needs exactly one per-position input of token ids/);
  });
});

// ── the loader, from a real model.js ────────────────────────────────────────────────────────

interface Loaded {
  forward(i: Record<string, unknown>): { logits: Float32Array; rows: number; cols: number };
  generate(r: Record<string, unknown>): number[];
}
interface ArtifactModule {
  load(source: unknown): Promise<Loaded>;
  KilnError: new (...a: never[]) => Error;
}

/** model.ts around the stand-in, transpiled and imported. */
async function artifact(
  graph: Graph,
  model: ArtifactModel,
  opts: StandInOptions,
): Promise<{ mod: ArtifactModule; ts: string; spec: ArtifactSpec }> {
  const spec = specOf(graph, model);
  const source = modelSource(spec, { kilnVersion: "test", kernels: standInKernels(opts) });
  const { js } = transpile(source);
  const dir = tempDir("kiln-artifact-");
  writeFileSync(join(dir, "model.js"), js);
  writeFileSync(join(dir, "package.json"), '{"type":"module"}');
  const mod = (await import(pathToFileURL(join(dir, "model.js")).href)) as ArtifactModule;
  return { mod, ts: source, spec };
}

/** Resolves to the error `load` or `f` rejects with. */
async function errorOf(
  f: () => unknown,
): Promise<Error & { kind?: string; where?: string; detail?: string }> {
  try {
    await f();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error");
}

function checkpointDir(tensors: WritableTensor[], config: object): string {
  const dir = tempDir();
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  writeFileSync(join(dir, "model.safetensors"), writeSafetensors(tensors));
  return dir;
}

describe("the loader (GPT-2 layout, stand-in kernels)", () => {
  const graph = buildGraph(gpt2, GPT2);
  const tensors = randomTensors({ kind: "gpt2", config: GPT2 });
  const params = tensors.map((t) => t.name);
  const opts: StandInOptions = { vocab: 23, params, stepInput: 0 };
  const bias = tensors.reduce((s, t) => s + Math.fround(t.data[0]), 0);
  const config = { model_type: "gpt2", ...GPT2 };
  let mod: ArtifactModule;
  let bytes: Uint8Array;

  beforeAll(async () => {
    ({ mod } = await artifact(graph, { kind: "gpt2", name: "gpt2", config: GPT2 }, opts));
    bytes = writeSafetensors(tensors);
  }, 60_000);

  it("loads from bytes (Uint8Array, ArrayBuffer, a view at an offset) and from a folder", async () => {
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    const sources = [
      bytes,
      bytes.slice().buffer,
      shifted.subarray(3),
      checkpointDir(tensors, config),
      join(checkpointDir(tensors, config), "model.safetensors"),
    ];
    for (const src of sources) {
      const m = await mod.load(src);
      const r = m.forward({ tokens: [4, 9] });
      expect([r.rows, r.cols]).toEqual([2, 23]);
      // The stand-in's formula: the weights reached it by name, the tokens in order.
      expect(r.logits[23 + 5]).toBeCloseTo(((7 * 9 + 3 * 5 + 5) % 23) + bias, 4);
    }
  });

  it("reads the checkpoint layout as kiln does: prefix, ignored buffers, tied head", async () => {
    const hub = [
      ...tensors.map((t) => ({ ...t, name: `transformer.${t.name}` })),
      {
        name: "h.0.attn.bias",
        dtype: "F32" as const,
        shape: [1, 1, 8, 8],
        data: new Float32Array(64),
      },
      {
        name: "lm_head.weight",
        dtype: "F32" as const,
        shape: [23, 8],
        data: new Float32Array(184),
      },
    ];
    const dir = checkpointDir(hub, config);
    expect(() => loadCheckpoint(dir)).not.toThrow();
    const m = await mod.load(dir);
    expect(m.forward({ tokens: [1] }).logits[0]).toBeCloseTo(((7 + 0) % 23) + bias, 4);
  });

  it("refuses what loadCheckpoint refuses, with the same words", async () => {
    const wpe = tensors.findIndex((t) => t.name === "wpe.weight");
    const cases: WritableTensor[][] = [
      tensors.filter((t) => t.name !== "wpe.weight"), // missing
      [...tensors, { name: "extra.weight", dtype: "F32", shape: [1], data: [0] }], // unexpected
      [...tensors, { ...tensors[wpe], name: "transformer.wpe.weight" }], // stored twice
      tensors.map((t, i) => (i === wpe ? { ...t, shape: [8, 8, 1] } : t)), // mis-shaped
    ];
    for (const c of cases) {
      const dir = checkpointDir(c, config);
      const want = await errorOf(() => loadCheckpoint(dir));
      const got = await errorOf(() => mod.load(dir));
      expect(got).toBeInstanceOf(mod.KilnError);
      expect([got.kind, got.detail]).toEqual(["checkpoint", (want as KilnError).detail]);
    }
  });

  it("checks config.json against the config it was compiled for", async () => {
    const dir = checkpointDir(tensors, { ...config, n_head: 4 });
    const e = await errorOf(() => mod.load(dir));
    expect(e.message).toMatch(/config\.json: "n_head" is 4, but this artifact was compiled for 2/);
    const { layer_norm_epsilon: _default, ...rest } = config;
    await expect(mod.load(checkpointDir(tensors, rest))).resolves.toBeDefined();
    const other = await errorOf(() =>
      mod.load(checkpointDir(tensors, { ...rest, model_type: "bert" })),
    );
    expect(other.message).toMatch(/"model_type" is "bert"/);
  });

  it("checks inputs before anything runs", async () => {
    const m = await mod.load(bytes);
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { tokens: [1, 23] },
        /tokens: token id 23 at position 1 is outside the vocabulary \[0, 23\)/,
      ],
      [{ tokens: [1.5] }, /token id 1.5 at position 0/],
      [{ tokens: [] }, /tokens: needs at least one element/],
      [
        { tokens: Array(9).fill(1) },
        /tokens: length 9 exceeds the context length n_positions \(8\)/,
      ],
      [
        { tokens: [1], srcTokens: [1] },
        /srcTokens: this model has no such input \(it takes tokens\)/,
      ],
      [{}, /tokens: missing/],
      [{ tokens: "12" }, /tokens: expected an array of numbers \(token ids in \[0, 23\)\)/],
      [{ tokens: [1, "2"] }, /tokens: element 1 is a string, expected a number/],
    ];
    for (const [inputs, msg] of cases) {
      const e = await errorOf(() => m.forward(inputs));
      expect([e.name, e.kind]).toEqual(["KilnError", "input"]);
      expect(e.message).toMatch(msg);
    }
  });

  it("generate: greedy through the KV cache, the context checked, options checked", async () => {
    const m = await mod.load(bytes);
    expect(m.generate({ tokens: [3, 5], maxNewTokens: 6 })).toEqual(standInGreedy(opts, [3, 5], 6));
    expect(m.generate({ tokens: [3], maxNewTokens: 0 })).toEqual([]);
    expect((await errorOf(() => m.generate({ tokens: [3, 5], maxNewTokens: 7 }))).message).toMatch(
      /2 prompt tokens \+ 7 new tokens exceed the model's context of 8/,
    );
    for (const [opt, msg] of [
      [{ maxNewTokens: -1 }, /maxNewTokens: must be a non-negative integer/],
      [{ maxNewTokens: 1, temperature: -1 }, /temperature: must be a number ≥ 0/],
      [{ maxNewTokens: 1, topK: 0 }, /topK: must be a positive integer/],
      [{ maxNewTokens: 1, seed: 0.5 }, /seed: must be an integer/],
    ] as const)
      expect((await errorOf(() => m.generate({ tokens: [1], ...opt }))).message).toMatch(msg);
  });

  it("generate samples as runtime/generate.ts does: softmax(logits / t) over the top k, mulberry32(seed)", async () => {
    const m = await mod.load(bytes);
    for (const [temperature, topK, seed] of [
      [0.7, undefined, 0],
      [1.3, 5, 42],
      [2, 1, 7],
    ] as const) {
      const rand = seededRandom(seed);
      const tokens = [2];
      const want: number[] = [];
      for (let i = 0; i < 5; i++) {
        const last = m.forward({ tokens }).logits.slice(-23);
        const next = sample(last, temperature, topK, rand);
        want.push(next);
        tokens.push(next);
      }
      expect(m.generate({ tokens: [2], maxNewTokens: 5, temperature, topK, seed })).toEqual(want);
    }
  });

  it("a malformed safetensors file gives the runtime reader's error, word for word", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat(bytes.length - 1),
        fc.integer({ min: 0, max: 255 }),
        fc.nat(8),
        async (at, value, cut) => {
          const broken = bytes.slice(0, bytes.length - cut);
          if (at < broken.length) broken[at] = value;
          let want: KilnError | undefined;
          try {
            parseSafetensors(broken, "model.safetensors");
          } catch (e) {
            want = e as KilnError;
          }
          const got = await mod.load(broken).then(
            () => undefined,
            (e: Error & { kind?: string }) => e,
          );
          if (want) {
            expect(got?.kind).toBe("safetensors");
            expect(got?.message).toBe(want.message);
          } else if (got) expect(got.kind).toBe("checkpoint");
        },
      ),
      { numRuns: 150 },
    );
    const e = await errorOf(() => mod.load(new Uint8Array(5)));
    expect(e.message).toBe(
      "model.safetensors: file is 5 bytes, too short for the 8-byte header length; not a safetensors file",
    );
    expect((await errorOf(() => mod.load(42))).message).toMatch(
      /expected a checkpoint folder path/,
    );
    expect((await errorOf(() => mod.load(tempDir()))).message).toMatch(
      /model\.safetensors: file not found/,
    );
  });
});

describe("the loader, other models", () => {
  it("seq2seq: the source is required and checked against its own vocabulary", async () => {
    const graph = buildGraph(seq2seq, S2S);
    const tensors = randomTensors({ kind: "seq2seq", config: S2S });
    const opts = { vocab: 13, params: tensors.map((t) => t.name), stepInput: 1 };
    const { mod } = await artifact(graph, { kind: "seq2seq", name: "seq2seq", config: S2S }, opts);
    const m = await mod.load(writeSafetensors(tensors));
    expect((await errorOf(() => m.forward({ tokens: [1] }))).message).toMatch(/srcTokens: missing/);
    expect((await errorOf(() => m.forward({ tokens: [1], srcTokens: [11] }))).message).toMatch(
      /srcTokens: token id 11 at position 0 is outside the vocabulary \[0, 11\)/,
    );
    expect(m.generate({ tokens: [4], srcTokens: [1, 2, 3], maxNewTokens: 4 })).toEqual(
      standInGreedy(opts, [4], 4),
    );
  });

  it("hostile param names stay inside string literals, and load", async () => {
    const names = [
      'evil"); globalThis.pwned = 1; ("',
      "evil*/ globalThis.pwned = 2; /*",
      "evil\u2028name",
      "evil\\u0022",
    ];
    const hostile = defineModel({
      name: 'evil"name*/',
      defaults: {},
      build(m) {
        m.bound("T", 4, "the test's context");
        const tokens = m.input("tokens", "i32", ["T"]);
        const [first, ...rest] = names.map((n) => embed(m.param(n, [5, 3]), tokens));
        return rest.reduce((x, y) => add(x, y), first);
      },
    });
    const graph = buildGraph(hostile, {});
    const opts = { vocab: 5, params: names, stepInput: 0 };
    const { mod, ts: source } = await artifact(
      graph,
      { kind: "model", name: 'evil"name*/', config: {} },
      opts,
    );
    const sf = ts.createSourceFile("model.ts", source, ts.ScriptTarget.ES2022, true);
    const identifiers: string[] = [];
    const visit = (n: ts.Node): void => {
      if (ts.isIdentifier(n)) identifiers.push(n.text);
      ts.forEachChild(n, visit);
    };
    visit(sf);
    expect(identifiers.filter((i) => i.includes("evil") || i.includes("pwned"))).toEqual([]);
    const tensors = names.map((name) => ({
      name,
      dtype: "F32" as const,
      shape: [5, 3],
      data: new Float32Array(15),
    }));
    const m = await mod.load(writeSafetensors(tensors));
    expect(m.forward({ tokens: [1, 2] }).rows).toBe(2);
    expect((globalThis as { pwned?: number }).pwned).toBeUndefined();
  });
});

it("model.js imports nothing but node:fs/promises, dynamically", async () => {
  const graph = buildGraph(gpt2, GPT2);
  const spec = specOf(graph, { kind: "gpt2", name: "gpt2", config: GPT2 });
  const src = modelSource(spec, {
    kilnVersion: "test",
    kernels: standInKernels({ vocab: 23, params: [], stepInput: 0 }),
  });
  const { js, dts } = transpile(src);
  expect(js).not.toMatch(/^\s*(import|export)\s.*\sfrom\s/m);
  expect(js).not.toMatch(/\brequire\s*\(/);
  expect([...js.matchAll(/\bimport\s*\(/g)].length).toBe(1);
  // Nothing of Node's but that import: the module also loads in a browser.
  const names = new Set<string>();
  const visit = (n: ts.Node): void => {
    if (ts.isIdentifier(n)) names.add(n.text);
    ts.forEachChild(n, visit);
  };
  visit(ts.createSourceFile("model.js", js, ts.ScriptTarget.ES2022, true));
  for (const node of ["Buffer", "process", "require", "__dirname", "global", "module"])
    expect(names.has(node)).toBe(false);
  expect(dts).toMatch(
    /export declare function load\(source: ModelSource\): Promise<Model<Inputs>>;/,
  );
  expect(dts).toMatch(/export interface Inputs \{[^}]*tokens: Sequence;/);
});
