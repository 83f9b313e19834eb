/** `kiln compile`: its usage errors, and the artifact it writes, run as a user would run it —
 *  the folder copied alone into a fresh temporary folder outside the repository (no node_modules
 *  anywhere above it) and imported by a plain `node` process. The artifact reproduces
 *  `kiln forward --target ts` exactly (the same kernels), the PyTorch fixtures within 1e-4, and
 *  their greedy tokens; `kiln generate --target ts`'s sampled tokens too. Model files compile
 *  with their own param names; --seq-len caps the length. */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ts } from "ts-morph";
import { beforeAll, describe, expect, it } from "vitest";
import { emitModule } from "../../compiler/codegen/ts/module.ts";
import { lower } from "../../compiler/lower/lower.ts";
import { runPipeline } from "../../compiler/passes/pipeline.ts";
import { loadCheckpoint } from "../../runtime/checkpoint.ts";
import { writeSafetensors } from "../../runtime/safetensors-write.ts";
import { randomTensors } from "../../scripts/random-checkpoint.ts";
import { buildClassifier, classify, pad, randomWeights } from "../../examples/classifier/run.ts";
import { REPO, expectTypedError, kiln, tempDir } from "../helpers/cli.ts";

const FIXTURES = join(REPO, "test", "fixtures");

interface Expected {
  forward: { tokens: number[]; src_tokens?: number[]; logits: number[][] }[];
  generate: {
    tokens: number[];
    src_tokens?: number[];
    max_new_tokens: number;
    new_tokens: number[];
  }[];
}

describe("usage", () => {
  it("errors are typed and name the flag", async () => {
    const out = join(tempDir(), "out");
    expectTypedError(await kiln("compile", "gpt2"), "usage", "--out DIR is required");
    expectTypedError(
      await kiln("compile", "gpt2", "--out", out, "--target", "cuda"),
      "usage",
      '--target: unknown target "cuda" (ts, wgsl)',
    );
    expectTypedError(
      await kiln("compile", join(FIXTURES, "gpt2-tiny"), "--out", out, "--config", "n_layer=1"),
      "usage",
      "--config: applies to model files",
    );
    expectTypedError(
      await kiln("compile", "gpt2", "--out", out, "--seq-len", "0"),
      "usage",
      "--seq-len",
    );
    expectTypedError(
      await kiln("compile", "no-such-model", "--out", out),
      "usage",
      "no such model",
    );
    expectTypedError(
      await kiln("compile", "gpt2", "a", "--out", out),
      "usage",
      "expected one model",
    );
    const file = join(tempDir(), "file");
    writeFileSync(file, "");
    expectTypedError(await kiln("compile", "gpt2", "--out", file), "usage", "is not a folder");
    expect(existsSync(out)).toBe(false);
  });

  it("--help", async () => {
    const r = await kiln("compile", "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--target ts/);
  });
});

/** A fresh folder in the system's temp dir, checked to have no node_modules above it. */
function isolatedDir(): string {
  const dir = tempDir("kiln-artifact-run-");
  expect(resolve(dir).startsWith(REPO)).toBe(false);
  for (let d = dir; ; d = dirname(d)) {
    expect(existsSync(join(d, "node_modules"))).toBe(false);
    if (dirname(d) === d) break;
  }
  return dir;
}

/** Runs `script` (an ES module body with `artifact` and `ckpt` in scope) with plain node in `cwd`;
 *  its last line of stdout is JSON. */
function runNode(cwd: string, script: string): unknown {
  const r = spawnSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `const artifact = await import("./artifact/model.js");\n${script}`,
    ],
    { cwd, encoding: "utf8", env: { PATH: process.env.PATH ?? "" } },
  );
  if (r.status !== 0) throw new Error(`node exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

interface RunResult {
  forward: number[][][];
  generate: number[][];
  sampled: number[];
  fromBytes: number[][];
  malformed: { name: string; kind: string; message: string }[];
}

/** Forward and generate every fixture case through the copied artifact, from a path and from
 *  bytes, and two malformed weight files; all in one node process. */
const SCRIPT = `
import { readFileSync, writeFileSync, mkdirSync, copyFileSync } from "node:fs";
const cases = JSON.parse(readFileSync("cases.json", "utf8"));
const inputs = (c) => ({ tokens: c.tokens, ...(c.src_tokens ? { srcTokens: c.src_tokens } : {}) });
const rows = (r) => Array.from({ length: r.rows }, (_, i) => Array.from(r.logits.subarray(i * r.cols, (i + 1) * r.cols)));
const model = await artifact.load("ckpt");
const bytes = readFileSync("ckpt/model.safetensors");
const fromBytes = await artifact.load(new Uint8Array(bytes).buffer);
const malformed = [];
mkdirSync("broken");
copyFileSync("ckpt/config.json", "broken/config.json");
writeFileSync("broken/model.safetensors", bytes.subarray(0, bytes.length - 3));
for (const src of [bytes.subarray(0, 20), "broken"]) {
  try { await artifact.load(src); malformed.push(null); }
  catch (e) { malformed.push({ name: e.name, kind: e.kind, message: e.message, isKilnError: e instanceof artifact.KilnError }); }
}
const g = cases.generate[0];
console.log(JSON.stringify({
  forward: cases.forward.map((c) => rows(model.forward(inputs(c)))),
  generate: cases.generate.map((c) => model.generate({ ...inputs(c), maxNewTokens: c.max_new_tokens })),
  sampled: model.generate({ ...inputs(g), maxNewTokens: g.max_new_tokens, temperature: 0.9, topK: 5, seed: 3 }),
  fromBytes: rows(fromBytes.forward(inputs(cases.forward[1]))),
  malformed,
}));
`;

const tokensFlags = (c: { tokens: number[]; src_tokens?: number[] }) => [
  "--tokens",
  c.tokens.join(","),
  ...(c.src_tokens ? ["--src-tokens", c.src_tokens.join(",")] : []),
];

function maxDiff(a: number[][], b: number[][]): number {
  let m = 0;
  a.forEach((row, i) => row.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[i][j])))));
  return m;
}

describe.each(["gpt2-tiny", "seq2seq-tiny"])(
  "the artifact of %s, copied out of the repository",
  (name) => {
    const ckpt = join(FIXTURES, name);
    const expected = JSON.parse(readFileSync(join(ckpt, "expected.json"), "utf8")) as Expected;
    let out: string;
    let result: RunResult;

    beforeAll(async () => {
      out = join(tempDir(), "artifact");
      const r = await kiln("compile", ckpt, "--target", "ts", "--out", out);
      if (r.code !== 0) throw new Error(r.stderr);
      expect(r.stdout).toMatch(/compiled .* for --target ts: \d+ kernels/);
      const run = isolatedDir();
      cpSync(out, join(run, "artifact"), { recursive: true });
      cpSync(ckpt, join(run, "ckpt"), { recursive: true });
      writeFileSync(join(run, "cases.json"), JSON.stringify(expected));
      result = runNode(run, SCRIPT) as RunResult;
    }, 240_000);

    it("writes the six files", () => {
      for (const f of [
        "model.ts",
        "model.js",
        "model.d.ts",
        "manifest.json",
        "README.md",
        "package.json",
      ])
        expect(existsSync(join(out, f))).toBe(true);
    });

    it("reproduces the PyTorch logits within 1e-4, and kiln forward --target ts exactly", async () => {
      for (const [i, c] of expected.forward.entries()) {
        expect(maxDiff(result.forward[i], c.logits)).toBeLessThan(1e-4);
        const r = await kiln("forward", ckpt, ...tokensFlags(c), "--target", "ts", "--json");
        expect(r.code).toBe(0);
        expect(result.forward[i]).toEqual((JSON.parse(r.stdout) as { logits: number[][] }).logits);
      }
      expect(result.fromBytes).toEqual(result.forward[1]);
    }, 120_000);

    it("generates the fixtures' greedy tokens, and kiln generate's sampled ones", async () => {
      expect(result.generate).toEqual(expected.generate.map((g) => g.new_tokens));
      const g = expected.generate[0];
      const r = await kiln(
        "generate",
        ckpt,
        ...tokensFlags(g),
        "--max-new-tokens",
        String(g.max_new_tokens),
        "--temperature",
        "0.9",
        "--top-k",
        "5",
        "--seed",
        "3",
        "--target",
        "ts",
        "--json",
      );
      expect(result.sampled).toEqual((JSON.parse(r.stdout) as { tokens: number[] }).tokens);
    }, 120_000);

    it("a malformed weights file is a KilnError from the artifact, not a crash", () => {
      expect(result.malformed).toEqual([
        {
          name: "KilnError",
          kind: "safetensors",
          message: expect.stringMatching(
            /^model\.safetensors: header length \d+ runs past the end/,
          ),
          isKilnError: true,
        },
        {
          name: "KilnError",
          kind: "safetensors",
          message: expect.stringMatching(
            /^broken\/model\.safetensors: .* run past the end of the file/,
          ),
          isKilnError: true,
        },
      ]);
    });

    it("manifest.json: kernels as inspect lists them, the kernels' own memory plan, the model", async () => {
      const m = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8"));
      const inspect = JSON.parse((await kiln("inspect", ckpt, "--format", "json")).stdout);
      expect(
        m.kernels.map((k: { name: string; family: string; phase: string; covers: string[] }) => [
          k.name,
          k.family,
          k.phase,
          k.covers,
        ]),
      ).toEqual(
        inspect.kernels.map(
          (k: { name: string; family: string; phase: string; covers: string[] }) => [
            k.name,
            k.family,
            k.phase,
            k.covers,
          ],
        ),
      );
      const c = loadCheckpoint(ckpt);
      const program = lower(runPipeline(c.graph).graph);
      const arena = Number(/arenaElements: (\d+)/.exec(emitModule(program))![1]);
      expect(m.memory.arenaBytes).toBe(4 * arena);
      expect(m.buffers).toHaveLength(program.buffers.length);
      expect(m.kiln).toBe(JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")).version);
      expect(m.model.kind).toBe(name.split("-")[0]);
      expect(m.outputs[0]).toMatchObject({ name: "logits", dtype: "f32" });
      expect(m.inputs.map((i: { key: string }) => i.key)).toEqual(
        name.startsWith("gpt2") ? ["tokens"] : ["srcTokens", "tokens"],
      );
    }, 120_000);
  },
);

describe("model files", () => {
  const config = ["n_layer=1", "n_embd=8", "n_head=2", "vocab_size=19", "n_positions=8"];
  let gpt2: string;

  beforeAll(async () => {
    gpt2 = join(tempDir(), "gpt2");
    const r = await kiln(
      "compile",
      "models/gpt2.ts",
      ...config.flatMap((c) => ["--config", c]),
      "--seq-len",
      "5",
      "--out",
      gpt2,
    );
    if (r.code !== 0) throw new Error(r.stderr);
  }, 240_000);

  it("load takes the file's param names exactly, and --seq-len caps the length", async () => {
    const m = JSON.parse(readFileSync(join(gpt2, "manifest.json"), "utf8"));
    expect(m.model).toMatchObject({
      kind: "model",
      name: "gpt2",
      config: { n_layer: 1, vocab_size: 19 },
    });
    expect(m.layout).toEqual({ stripPrefixes: [], ignore: [] });
    const mod = await import(pathToFileURL(join(gpt2, "model.js")).href);
    const cfg = {
      vocab_size: 19,
      n_positions: 8,
      n_embd: 8,
      n_layer: 1,
      n_head: 2,
      layer_norm_epsilon: 1e-5,
    };
    const tensors = randomTensors({ kind: "gpt2", config: cfg });
    const model = await mod.load(writeSafetensors(tensors));
    expect(model.forward({ tokens: [1, 2, 3, 4, 5] }).rows).toBe(5);
    await expect(async () => model.forward({ tokens: [1, 2, 3, 4, 5, 6] })).rejects.toThrow(
      /tokens: length 6 exceeds the length the artifact was compiled for \(--seq-len\) \(5\)/,
    );
    const prefixed = tensors.map((t) => ({ ...t, name: `transformer.${t.name}` }));
    await expect(mod.load(writeSafetensors(prefixed))).rejects.toThrow(
      /tensor "transformer\.[^"]+": unexpected \(not a parameter of gpt2\)/,
    );
  }, 120_000);

  it("hostile names from a model file reach the artifact only as strings", async () => {
    const names = [
      'evil"); globalThis.pwned = 1; ("',
      "evil*/ globalThis.pwned = 2; /*",
      "evil\u2028x",
    ];
    const dir = tempDir();
    const file = join(dir, "evil-model.ts");
    writeFileSync(
      file,
      `import { add, defineModel, embed } from ${JSON.stringify(join(REPO, "compiler/dsl/index.ts"))};
export default defineModel({
  name: ${JSON.stringify('evil*/ name"')},
  defaults: {},
  build(m) {
    m.bound("T", 4, "the test's context");
    const tokens = m.input("tokens", "i32", ["T"]);
    const names: string[] = ${JSON.stringify(names)};
    const [first, ...rest] = names.map((n) => embed(m.param(n, [5, 3]), tokens));
    return rest.reduce((x, y) => add(x, y), first);
  },
});
`,
    );
    const out = join(dir, "out");
    const r = await kiln("compile", file, "--out", out);
    if (r.code !== 0) throw new Error(r.stderr);
    const source = readFileSync(join(out, "model.ts"), "utf8");
    const identifiers: string[] = [];
    const visit = (n: ts.Node): void => {
      if (ts.isIdentifier(n)) identifiers.push(n.text);
      ts.forEachChild(n, visit);
    };
    visit(ts.createSourceFile("model.ts", source, ts.ScriptTarget.ES2022, true));
    expect(identifiers.filter((i) => /evil|pwned/.test(i))).toEqual([]);
    const mod = await import(pathToFileURL(join(out, "model.js")).href);
    const weights = names.map((name, i) => ({
      name,
      dtype: "F32" as const,
      shape: [5, 3],
      data: Float32Array.from({ length: 15 }, (_, j) => i + j / 16),
    }));
    const y = (await mod.load(writeSafetensors(weights))).forward({ tokens: [2, 4] });
    // Row t is Σ_i table_i[token t]: i + (3·token + c) / 16 summed over the three tables.
    expect(Array.from(y.logits)).toEqual(
      [2, 4].flatMap((t) => [0, 1, 2].map((c) => 3 + (3 * (3 * t + c)) / 16)),
    );
    expect((globalThis as { pwned?: number }).pwned).toBeUndefined();
  }, 240_000);

  it("a model with a float input: forward takes it by its camel-cased name; generate says why not", async () => {
    const cfg = { layers: 1, width: 16, ffn: 32 };
    const out = join(tempDir(), "classifier");
    const flags = Object.entries(cfg).flatMap(([k, v]) => ["--config", `${k}=${v}`]);
    const r = await kiln("compile", "examples/classifier/model.ts", ...flags, "--out", out);
    if (r.code !== 0) throw new Error(r.stderr);
    const m = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8"));
    expect(m.generate).toMatchObject({ available: false });
    expect(readFileSync(join(out, "model.d.ts"), "utf8")).toMatch(/attentionMask: Sequence;/);
    expect(readFileSync(join(out, "README.md"), "utf8")).toMatch(
      /`attentionMask` \| `attention_mask`/,
    );
    const graph = buildClassifier(cfg);
    const weights = randomWeights(graph, 7);
    const bytes = writeSafetensors(
      [...weights].map(([name, w]) => ({ name, dtype: "F32", shape: w.shape, data: w.data })),
    );
    const mod = await import(pathToFileURL(join(out, "model.js")).href);
    const model = await mod.load(bytes);
    const { tokens, mask } = pad([17, 254, 981, 3, 560], 8);
    const got = model.forward({ tokens, attentionMask: mask });
    expect([got.rows, got.cols]).toEqual([1, 2]);
    const want = classify(graph, weights, tokens, mask).logits;
    want.forEach((v, i) => expect(Math.abs(got.logits[i] - v)).toBeLessThan(1e-4));
    expect(() => model.generate({ tokens, attentionMask: mask, maxNewTokens: 1 })).toThrow(
      /generate: generate needs exactly one per-position input of token ids/,
    );
  }, 240_000);
});
