/** `kiln compile --target wgsl`: the artifact it writes, run as a user would run it — the folder
 *  copied alone into a fresh temporary folder outside the repository, next to a node_modules that
 *  holds the `webgpu` package and nothing else, and imported by a plain `node` process that makes
 *  its own device (`create(["backend=vulkan"])`) and passes it to `load`. For the gpt2 and
 *  seq2seq fixtures, from the checkpoint folder and from the bytes of model.safetensors: the
 *  logits equal `kiln forward --target wgsl`'s within 1e-5 (the same kernels, compiled against
 *  WebGPU's default limits rather than the device's) and the PyTorch fixtures' within 1e-4 with
 *  the same argmax; greedy generate gives the fixtures' tokens, and sampling kiln generate's. The
 *  files: one kernels/<name>.wgsl per kernel (exactly the emitted source, the kernels inspect
 *  lists), manifest.json without sources. `--seq-len` caps the length. Skipped, with a visible
 *  message, only where no WebGPU adapter exists (test/helpers/gpu.ts; CI requires one). */
import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { WEBGPU_DEFAULTS } from "../../compiler/codegen/wgsl/limits.ts";
import { emitWgsl } from "../../compiler/codegen/wgsl/program.ts";
import { lower } from "../../compiler/lower/lower.ts";
import { runPipeline } from "../../compiler/passes/pipeline.ts";
import { loadCheckpoint } from "../../runtime/checkpoint.ts";
import { decodingGraph } from "../../runtime/runner.ts";
import { REPO, kiln, tempDir } from "../helpers/cli.ts";
import { testGpu } from "../helpers/gpu.ts";

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
  it("--help describes --target wgsl and its files", async () => {
    const r = await kiln("compile", "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--target ts\|wgsl/);
    expect(r.stdout).toMatch(/DIR\/kernels\/\*\.wgsl/);
    expect(r.stdout).toMatch(/WebGPU's default limits/);
  });
});

/** A fresh folder in the system's temp dir with `node_modules/webgpu` (a link to the repo's)
 *  and nothing else; no node_modules above it. */
function isolatedDir(): string {
  const dir = tempDir("kiln-wgsl-artifact-run-");
  expect(resolve(dir).startsWith(REPO)).toBe(false);
  for (let d = dirname(dir); ; d = dirname(d)) {
    expect(existsSync(join(d, "node_modules"))).toBe(false);
    if (dirname(d) === d) break;
  }
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(join(REPO, "node_modules", "webgpu"), join(dir, "node_modules", "webgpu"), "dir");
  expect(readdirSync(join(dir, "node_modules"))).toEqual(["webgpu"]);
  return dir;
}

/** The environment the child gets: PATH, and what points Vulkan at a software driver if set. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? "" };
  for (const k of ["VK_ICD_FILENAMES", "VK_DRIVER_FILES", "LD_LIBRARY_PATH", "HOME"])
    if (process.env[k] !== undefined) env[k] = process.env[k];
  return env;
}

/** Runs `script` (an ES module body with `artifact` and `device` in scope) with plain node in
 *  `cwd`; its last line of stdout is JSON. The object `create` returns stays referenced to the
 *  end (Dawn crashes the process when it is collected). */
function runNode(cwd: string, script: string): unknown {
  const r = spawnSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `import { create } from "webgpu";
const artifact = await import("./artifact/model.js");
const gpu = create(["backend=vulkan"]);
const adapter = await gpu.requestAdapter();
if (!adapter) throw new Error("no adapter from backend=vulkan");
const device = await adapter.requestDevice();
${script}
device.destroy();
if (!gpu) throw new Error("unreachable");`,
    ],
    { cwd, encoding: "utf8", env: childEnv(), timeout: 240_000 },
  );
  if (r.status !== 0)
    throw new Error(`node exited ${r.status} (${r.signal ?? r.error?.message ?? ""}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

interface RunResult {
  forward: number[][][];
  generate: number[][];
  sampled: number[];
  fromBytes: number[][];
  malformed: { name: string; kind: string; message: string; isKilnError: boolean }[];
  notADevice: { kind: string; message: string };
}

/** Every fixture case through the copied artifact, from the folder and from the bytes, two
 *  malformed weight files and a call without a device; all in one node process. */
const SCRIPT = `
import { readFileSync, writeFileSync, mkdirSync, copyFileSync } from "node:fs";
const cases = JSON.parse(readFileSync("cases.json", "utf8"));
const inputs = (c) => ({ tokens: c.tokens, ...(c.src_tokens ? { srcTokens: c.src_tokens } : {}) });
const rows = (r) => Array.from({ length: r.rows }, (_, i) => Array.from(r.logits.subarray(i * r.cols, (i + 1) * r.cols)));
const model = await artifact.load(device, "ckpt");
const bytes = readFileSync("ckpt/model.safetensors");
const fromBytes = await artifact.load(device, new Uint8Array(bytes).buffer);
const malformed = [];
mkdirSync("broken");
copyFileSync("ckpt/config.json", "broken/config.json");
writeFileSync("broken/model.safetensors", bytes.subarray(0, bytes.length - 3));
for (const src of [bytes.subarray(0, 20), "broken"]) {
  try { await artifact.load(device, src); malformed.push(null); }
  catch (e) { malformed.push({ name: e.name, kind: e.kind, message: e.message, isKilnError: e instanceof artifact.KilnError }); }
}
let notADevice = null;
try { await artifact.load("ckpt"); } catch (e) { notADevice = { kind: e.kind, message: e.message }; }
const forward = [];
for (const c of cases.forward) forward.push(rows(await model.forward(inputs(c))));
const generate = [];
for (const c of cases.generate) generate.push(await model.generate({ ...inputs(c), maxNewTokens: c.max_new_tokens }));
const g = cases.generate[0];
const sampled = await model.generate({ ...inputs(g), maxNewTokens: g.max_new_tokens, temperature: 0.9, topK: 5, seed: 3 });
const fb = rows(await fromBytes.forward(inputs(cases.forward[1])));
model.destroy();
fromBytes.destroy();
console.log(JSON.stringify({ forward, generate, sampled, fromBytes: fb, malformed, notADevice }));
`;

const tokensFlags = (c: { tokens: number[]; src_tokens?: number[] }) => [
  "--tokens",
  c.tokens.join(","),
  ...(c.src_tokens ? ["--src-tokens", c.src_tokens.join(",")] : []),
];

function maxDiff(a: number[][], b: number[][]): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  a.forEach((row, i) => {
    expect(row.length).toBe(b[i].length);
    row.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[i][j]))));
  });
  return m;
}

const argmax = (row: readonly number[]) =>
  row.reduce((best, v, i) => (v > row[best] ? i : best), 0);

const gpu = await testGpu();

describe.skipIf(!gpu).each(["gpt2-tiny", "seq2seq-tiny"])(
  "the wgsl artifact of %s, copied out of the repository",
  (name) => {
    const ckpt = join(FIXTURES, name);
    const expected = JSON.parse(readFileSync(join(ckpt, "expected.json"), "utf8")) as Expected;
    let out: string;
    let result: RunResult;

    beforeAll(async () => {
      out = join(tempDir(), "artifact");
      const r = await kiln("compile", ckpt, "--target", "wgsl", "--out", out);
      if (r.code !== 0) throw new Error(r.stderr);
      expect(r.stdout).toMatch(/compiled .* for --target wgsl: \d+ kernels/);
      const run = isolatedDir();
      cpSync(out, join(run, "artifact"), { recursive: true });
      cpSync(ckpt, join(run, "ckpt"), { recursive: true });
      writeFileSync(join(run, "cases.json"), JSON.stringify(expected));
      result = runNode(run, SCRIPT) as RunResult;
    }, 300_000);

    it("writes kernels/*.wgsl (the emitted sources, the kernels inspect lists), model.js, model.d.ts, manifest.json, README.md, package.json", async () => {
      for (const f of ["model.js", "model.d.ts", "manifest.json", "README.md", "package.json"])
        expect(existsSync(join(out, f))).toBe(true);
      expect(existsSync(join(out, "model.ts"))).toBe(false);
      const c = loadCheckpoint(ckpt);
      const opt = runPipeline(c.graph);
      const wgsl = emitWgsl(lower(opt.graph), {
        limits: WEBGPU_DEFAULTS,
        graph: opt.graph,
        source: c.graph,
      });
      const wgslIn = (dir: string) =>
        readdirSync(join(out, dir))
          .filter((f) => f.endsWith(".wgsl"))
          .sort();
      expect(wgslIn("kernels")).toEqual(wgsl.kernels.map((k) => `${k.name}.wgsl`).sort());
      for (const k of wgsl.kernels)
        expect(readFileSync(join(out, "kernels", `${k.name}.wgsl`), "utf8")).toBe(k.source);
      // The decoding program generate runs (both models have a KV cache): kernels/decode/.
      const dg = decodingGraph(opt.graph);
      const decoding = emitWgsl(lower(dg), {
        limits: WEBGPU_DEFAULTS,
        graph: dg,
        source: c.graph,
      });
      expect(wgslIn("kernels/decode")).toEqual(
        decoding.kernels.map((k) => `${k.name}.wgsl`).sort(),
      );
      for (const k of decoding.kernels)
        expect(readFileSync(join(out, "kernels", "decode", `${k.name}.wgsl`), "utf8")).toBe(
          k.source,
        );
      const m = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8"));
      expect(m.generate).toEqual({ available: true, program: "decoding" });
      expect(m.decoding.kernels.map((k: { file: string }) => k.file)).toEqual(
        decoding.kernels.map((k) => `kernels/decode/${k.name}.wgsl`),
      );
      expect(m.decoding.outputs[0].shape[0]).toBe(1);
      expect(readFileSync(join(out, "README.md"), "utf8")).toMatch(/kernels\/decode\/\*\.wgsl/);
      const inspect = JSON.parse((await kiln("inspect", ckpt, "--format", "json")).stdout);
      const rows = (ks: { name: string; family: string; phase: string }[]) =>
        ks.map((k) => [k.name, k.family, k.phase]);
      expect(rows(m.kernels)).toEqual(rows(inspect.kernels));
      expect(m).toMatchObject({ target: "wgsl", limits: WEBGPU_DEFAULTS });
      expect(m.model.kind).toBe(name.split("-")[0]);
      expect(m.inputs.map((i: { key: string }) => i.key)).toEqual(
        name.startsWith("gpt2") ? ["tokens"] : ["srcTokens", "tokens"],
      );
      expect(readFileSync(join(out, "manifest.json"), "utf8")).not.toContain("@compute");
    }, 120_000);

    it("reproduces kiln forward --target wgsl within 1e-5, the PyTorch logits within 1e-4 with the same argmax", async () => {
      for (const [i, c] of expected.forward.entries()) {
        const got = result.forward[i];
        expect(maxDiff(got, c.logits)).toBeLessThan(1e-4);
        got.forEach((row, t) => expect(argmax(row)).toBe(argmax(c.logits[t])));
        const r = await kiln("forward", ckpt, ...tokensFlags(c), "--target", "wgsl", "--json");
        if (r.code !== 0) throw new Error(r.stderr);
        expect(
          maxDiff(got, (JSON.parse(r.stdout) as { logits: number[][] }).logits),
        ).toBeLessThanOrEqual(1e-5);
      }
      expect(result.fromBytes).toEqual(result.forward[1]);
    }, 180_000);

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
        "wgsl",
        "--json",
      );
      if (r.code !== 0) throw new Error(r.stderr);
      expect(result.sampled).toEqual((JSON.parse(r.stdout) as { tokens: number[] }).tokens);
    }, 180_000);

    it("malformed weights and a missing device are KilnErrors from the artifact, not crashes", () => {
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
      expect(result.notADevice).toEqual({
        kind: "usage",
        message: expect.stringMatching(/^load: expected a GPUDevice as the first argument/),
      });
    });
  },
);

describe.skipIf(!gpu)("--seq-len", () => {
  it("caps the length the wgsl artifact accepts: T's capacity in the program, the input check", async () => {
    const ckpt = join(FIXTURES, "gpt2-tiny");
    const full = JSON.parse(readFileSync(join(ckpt, "config.json"), "utf8")) as {
      n_positions: number;
    };
    const out = join(tempDir(), "artifact");
    const r = await kiln("compile", ckpt, "--target", "wgsl", "--seq-len", "4", "--out", out);
    if (r.code !== 0) throw new Error(r.stderr);
    const m = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8"));
    expect(m.dims.find((d: { symbol: string }) => d.symbol === "T").capacity).toBe(4);
    expect(m.inputs[0].maxLength).toBe(4);
    expect(full.n_positions).toBeGreaterThan(4);
    const mod = (await import(pathToFileURL(join(out, "model.js")).href)) as {
      load(
        device: GPUDevice,
        source: string,
      ): Promise<{
        forward(i: { tokens: number[] }): Promise<{ rows: number }>;
        destroy(): void;
      }>;
    };
    const model = await mod.load(gpu!.device, ckpt);
    expect((await model.forward({ tokens: [1, 2, 3, 4] })).rows).toBe(4);
    await expect(model.forward({ tokens: [1, 2, 3, 4, 5] })).rejects.toThrow(
      "tokens: length 5 exceeds the length the artifact was compiled for (--seq-len) (4)",
    );
    model.destroy();
  }, 180_000);
});
