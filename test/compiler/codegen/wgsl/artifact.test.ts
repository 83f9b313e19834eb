/** The WGSL artifact's own parts. The loader's asynchronous half (codegen/wgsl/artifact/runtime.ts)
 *  on a stand-in GPU target: the device check, forward, generate greedy and sampled through the
 *  KV cache and without one, one call at a time, the driver's errors as KilnErrors, destroy. The
 *  reading and checks it shares with the ts artifact are tested there (../artifact.test.ts).
 *  Then model.js as assembled: the driver is runtime/webgpu/session.ts verbatim, user names stay
 *  in string literals, nothing is imported; and, on the test device, a small model's artifact
 *  run in-process against the interpreter. End to end with the real models, in a separate node
 *  process and in a browser: test/cli/compile-wgsl.test.ts, test/browser/wgsl-artifact.test.ts. */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ts } from "ts-morph";
import { beforeAll, describe, expect, it } from "vitest";
import {
  buildWgslArtifact,
  writeWgslArtifact,
} from "../../../../compiler/codegen/wgsl/artifact.ts";
import {
  checkDevice,
  loadGpuModel,
  type GpuKernelModel,
  type GpuModel,
  type GpuTarget,
} from "../../../../compiler/codegen/wgsl/artifact/runtime.ts";
import {
  driverSource,
  programData,
} from "../../../../compiler/codegen/wgsl/artifact/model-source.ts";
import { withoutExports } from "../../../../compiler/codegen/ts/artifact/inline-source.ts";
import { artifactSpec, type ArtifactModel } from "../../../../compiler/codegen/ts/artifact/spec.ts";
import type { ArtifactSpec } from "../../../../compiler/codegen/ts/artifact/runtime.ts";
import { WEBGPU_DEFAULTS } from "../../../../compiler/codegen/wgsl/limits.ts";
import { emitWgsl, type WgslProgram } from "../../../../compiler/codegen/wgsl/program.ts";
import { KilnError } from "../../../../compiler/errors.ts";
import {
  add,
  buildGraph,
  defineModel,
  gelu,
  mul,
  tanh,
  type ModelDef,
} from "../../../../compiler/dsl/index.ts";
import type { Graph } from "../../../../compiler/ir/graph.ts";
import { ndarray } from "../../../../compiler/ir/ndarray.ts";
import { createSession } from "../../../../compiler/lower/execute.ts";
import { lower } from "../../../../compiler/lower/lower.ts";
import type { Program } from "../../../../compiler/lower/program.ts";
import { runPipeline } from "../../../../compiler/passes/pipeline.ts";
import gpt2, { type GPT2Config } from "../../../../models/gpt2.ts";
import { sample, seededRandom } from "../../../../runtime/generate.ts";
import { writeSafetensors } from "../../../../runtime/safetensors-write.ts";
import { randomTensors } from "../../../../scripts/random-checkpoint.ts";
import { tempDir } from "../../../helpers/cli.ts";
import { testGpu } from "../../../helpers/gpu.ts";
import { standInGreedy } from "../artifact-stand-in.ts";

const GPT2: GPT2Config = {
  vocab_size: 23,
  n_positions: 8,
  n_embd: 8,
  n_layer: 1,
  n_head: 2,
  layer_norm_epsilon: 1e-5,
};
const VOCAB = 23;

/** Resolves to the error `f` throws or rejects with. */
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

/** An object that passes for a GPUDevice with these limits. */
const fakeDevice = (limits: object = WEBGPU_DEFAULTS) => ({
  createBuffer: () => undefined,
  limits,
  queue: {},
});

/** The driver's error class as the artifact sees it: kind, where, detail. */
class DriverError extends Error {
  override readonly name = "WebGpuError";
  constructor(
    readonly kind: "input" | "device",
    readonly where: string,
    readonly detail: string,
  ) {
    super(`${where}: ${detail}`);
  }
}

interface StandIn {
  readonly target: GpuTarget;
  /** Every call's start and end, in order: "run<", "run>", "step<", "step>", "destroy …". */
  readonly log: string[];
  /** Throws this from the next run or step. */
  failNext?: Error;
}

/** A stand-in for the driver: artifact-stand-in.ts's logits (7·token + 3·v + 5·position) mod
 *  vocab + Σ the first value of each param, asynchronous, each call yielding to the event loop
 *  between its start and its end so that overlapping calls would show in the log. With
 *  `decoding`, the target has a decoding program too: its calls are logged "decode run<" …
 *  (with ":argmax" when only the token is read), its rows are only the last position's, and
 *  its load "load decoding". */
function standIn(params: readonly string[], stepInput = 0, decoding = false): StandIn {
  const log: string[] = [];
  const load =
    (prefix: string, lastOnly: boolean) =>
    async (weights: (name: string) => Float32Array | undefined): Promise<GpuKernelModel> => {
      let bias = 0;
      for (const name of params) {
        const w = weights(name);
        if (w === undefined) throw new DriverError("input", `param "${name}"`, "missing");
        bias += w[0];
      }
      let cached = 0;
      const rows = (tokens: ArrayLike<number>, first: number, read = "outputs") => {
        const out = new Float32Array(tokens.length * VOCAB);
        for (let t = 0; t < tokens.length; t++)
          for (let v = 0; v < VOCAB; v++)
            out[t * VOCAB + v] = ((7 * tokens[t] + 3 * v + 5 * (first + t)) % VOCAB) + bias;
        const n = lastOnly ? 1 : tokens.length;
        const kept = out.slice((tokens.length - n) * VOCAB);
        if (read === "argmax") {
          const last = kept.subarray((n - 1) * VOCAB);
          let best = 0;
          for (let v = 1; v < VOCAB; v++) if (last[v] > last[best]) best = v;
          return [{ shape: [1], data: Int32Array.of(best) }];
        }
        return [{ shape: [n, VOCAB], data: kept }];
      };
      const call = async <T>(what: string, f: () => T, read = "outputs"): Promise<T> => {
        what = prefix + what + (read === "argmax" ? ":argmax" : "");
        log.push(`${what}<`);
        await new Promise((r) => setImmediate(r));
        log.push(`${what}>`);
        const e = self.failNext;
        self.failNext = undefined;
        if (e) throw e;
        return f();
      };
      if (lastOnly) log.push("load decoding");
      return {
        createSession: () => ({
          run: (inputs, read) =>
            call(
              "run",
              () => {
                cached = inputs[stepInput].data.length;
                return rows(inputs[stepInput].data, 0, read);
              },
              read,
            ),
          step: (inputs, read) =>
            call(
              "step",
              () => {
                const out = rows(inputs[0].data, cached, read);
                cached += inputs[0].data.length;
                return out;
              },
              read,
            ),
          destroy: () => log.push(`destroy ${prefix}session`),
        }),
        destroy: () => log.push(`destroy ${prefix}model`),
      };
    };
  const self: StandIn = {
    log,
    target: {
      device: fakeDevice(),
      limits: { ...WEBGPU_DEFAULTS },
      load: load("", false),
      ...(decoding ? { loadDecoding: load("decode ", true) } : {}),
    },
  };
  return self;
}

type Inputs = { tokens: number[] };

describe("the loader's GPU half (GPT-2 layout, a stand-in driver)", () => {
  const graph = buildGraph(gpt2, GPT2);
  const program = lower(runPipeline(graph).graph);
  const model: ArtifactModel = { kind: "gpt2", name: "gpt2", config: GPT2 };
  const spec = artifactSpec(graph, program, model);
  const tensors = randomTensors({ kind: "gpt2", config: GPT2 });
  const params = tensors.map((t) => t.name);
  const bytes = writeSafetensors(tensors);
  const greedy = (prompt: number[], n: number) =>
    standInGreedy({ vocab: VOCAB, params, stepInput: 0 }, prompt, n);

  it("the device: a GPUDevice whose limits cover the kernels' profile", async () => {
    expect(() => checkDevice(fakeDevice(), { ...WEBGPU_DEFAULTS })).not.toThrow();
    for (const d of [undefined, "ckpt", {}, { createBuffer: 1, limits: {} }]) {
      const e = await errorOf(() => checkDevice(d, { ...WEBGPU_DEFAULTS }));
      expect([e.name, e.kind]).toEqual(["KilnError", "usage"]);
      expect(e.message).toMatch(/^load: expected a GPUDevice as the first argument/);
    }
    const small = fakeDevice({ ...WEBGPU_DEFAULTS, maxStorageBuffersPerShaderStage: 4 });
    const e = await errorOf(() => checkDevice(small, { ...WEBGPU_DEFAULTS }));
    expect([e.kind, e.message]).toEqual([
      "device",
      "load: the device's maxStorageBuffersPerShaderStage is 4; the kernels were compiled for 8 (request a device with higher limits, or compile against this device's)",
    ]);
    // load checks the device before it reads anything.
    const s = standIn(params);
    const bad = await errorOf(() =>
      loadGpuModel(spec, { ...s.target, device: "ckpt" }, 42 as never),
    );
    expect(bad.kind).toBe("usage");
  });

  it("forward: the stand-in's logits, rows × cols; inputs checked before the driver runs", async () => {
    const s = standIn(params);
    const m = await loadGpuModel<Inputs>(spec, s.target, bytes);
    const bias = tensors.reduce((a, t) => a + Math.fround(t.data[0]), 0);
    const r = await m.forward({ tokens: [3, 5] });
    expect([r.rows, r.cols]).toEqual([2, VOCAB]);
    expect(r.logits[VOCAB + 4]).toBeCloseTo(((7 * 5 + 3 * 4 + 5) % VOCAB) + bias, 4);
    const e = await errorOf(() => m.forward({ tokens: [23] }));
    expect([e.kind, e.message]).toEqual([
      "input",
      "tokens: token id 23 at position 0 is outside the vocabulary [0, 23)",
    ]);
    expect(s.log).toEqual(["run<", "run>"]);
  });

  it("generate: greedy through the KV cache (one run, then steps), sampled as runtime/generate.ts", async () => {
    const s = standIn(params);
    const m = await loadGpuModel<Inputs>(spec, s.target, bytes);
    expect(await m.generate({ tokens: [3, 5], maxNewTokens: 6 })).toEqual(greedy([3, 5], 6));
    expect(s.log.filter((x) => x.endsWith("<"))).toEqual(["run<", ...Array(5).fill("step<")]);
    expect(await m.generate({ tokens: [3], maxNewTokens: 0 })).toEqual([]);
    expect((await errorOf(() => m.generate({ tokens: [3, 5], maxNewTokens: 7 }))).message).toMatch(
      /2 prompt tokens \+ 7 new tokens exceed the model's context of 8/,
    );
    expect(
      (await errorOf(() => m.generate({ tokens: [1], maxNewTokens: 1, topK: 0 }))).message,
    ).toMatch(/topK: must be a positive integer/);
    for (const [temperature, topK, seed] of [
      [0.7, undefined, 0],
      [1.3, 5, 42],
    ] as const) {
      const rand = seededRandom(seed);
      const tokens = [2];
      const want: number[] = [];
      for (let i = 0; i < 5; i++) {
        const last = (await m.forward({ tokens })).logits.slice(-VOCAB);
        const next = sample(last, temperature, topK, rand);
        want.push(next);
        tokens.push(next);
      }
      expect(await m.generate({ tokens: [2], maxNewTokens: 5, temperature, topK, seed })).toEqual(
        want,
      );
    }
  });

  it("generate through the decoding program: loaded on the first generate, the argmax read at temperature 0; forward stays on the full program", async () => {
    const s = standIn(params, 0, true);
    const m = await loadGpuModel<Inputs>(spec, s.target, bytes);
    expect(s.log).toEqual([]);
    expect((await m.forward({ tokens: [3, 5] })).rows).toBe(2);
    expect(await m.generate({ tokens: [3, 5], maxNewTokens: 6 })).toEqual(greedy([3, 5], 6));
    expect(await m.generate({ tokens: [4], maxNewTokens: 3 })).toEqual(greedy([4], 3));
    // The full program ran the forward only; the decoding program was loaded once, and read
    // back only the chosen tokens.
    expect(s.log.filter((x) => !x.endsWith(">"))).toEqual([
      "run<",
      "load decoding",
      "decode run:argmax<",
      ...Array(5).fill("decode step:argmax<"),
      "decode run:argmax<",
      ...Array(2).fill("decode step:argmax<"),
    ]);
    // Sampled: the decoding program's rows (the last position's), as forward's last row.
    for (const [temperature, topK, seed] of [
      [0.7, undefined, 0],
      [1.3, 5, 42],
    ] as const) {
      const rand = seededRandom(seed);
      const tokens = [2];
      const want: number[] = [];
      for (let i = 0; i < 5; i++) {
        const last = (await m.forward({ tokens })).logits.slice(-VOCAB);
        const next = sample(last, temperature, topK, rand);
        want.push(next);
        tokens.push(next);
      }
      s.log.length = 0;
      expect(await m.generate({ tokens: [2], maxNewTokens: 5, temperature, topK, seed })).toEqual(
        want,
      );
      expect(s.log.filter((x) => x.endsWith("<"))).toEqual([
        "decode run<",
        ...Array(4).fill("decode step<"),
      ]);
    }
    m.destroy();
    await new Promise((r) => setImmediate(r));
    expect(s.log.filter((x) => x.startsWith("destroy"))).toEqual([
      "destroy session",
      "destroy model",
      "destroy decode session",
      "destroy decode model",
    ]);
  });

  it("without a KV cache generate ignores the decoding program", async () => {
    const s = standIn(params, 0, true);
    const m = await loadGpuModel<Inputs>({ ...spec, kvCache: false }, s.target, bytes);
    expect(await m.generate({ tokens: [4], maxNewTokens: 3 })).toEqual(greedy([4], 3));
    expect(s.log.filter((x) => x.endsWith("<"))).toEqual(Array(3).fill("run<"));
  });

  it("generate without a KV cache reruns the whole sequence for each token", async () => {
    const s = standIn(params);
    const noCache: ArtifactSpec = { ...spec, kvCache: false };
    const m = await loadGpuModel<Inputs>(noCache, s.target, bytes);
    expect(await m.generate({ tokens: [4], maxNewTokens: 4 })).toEqual(greedy([4], 4));
    expect(s.log.filter((x) => x.endsWith("<"))).toEqual(Array(4).fill("run<"));
  });

  it("one call at a time: a forward made during a generate waits for it", async () => {
    const s = standIn(params);
    const m = await loadGpuModel<Inputs>(spec, s.target, bytes);
    const [a, b, c] = await Promise.all([
      m.generate({ tokens: [3, 5], maxNewTokens: 4 }),
      m.forward({ tokens: [1, 2, 3] }),
      m.generate({ tokens: [3, 5], maxNewTokens: 4 }),
    ]);
    expect(a).toEqual(greedy([3, 5], 4));
    expect(c).toEqual(a);
    expect(b.rows).toBe(3);
    // Every call ends before the next starts, in the order they were made.
    const calls = s.log.filter((x) => x.endsWith("<"));
    expect(s.log).toEqual(calls.flatMap((x) => [x, x.replace("<", ">")]));
    expect(calls).toEqual([
      "run<",
      "step<",
      "step<",
      "step<",
      "run<",
      "run<",
      "step<",
      "step<",
      "step<",
    ]);
    // A failed call does not stop the ones after it.
    s.failNext = new DriverError("device", "k3_matmul", "validation error: boom");
    const [failed, next] = await Promise.allSettled([
      m.forward({ tokens: [1] }),
      m.forward({ tokens: [1] }),
    ]);
    expect(failed.status).toBe("rejected");
    expect(next.status).toBe("fulfilled");
  });

  it("the driver's errors are KilnErrors (kind input or device); others pass through", async () => {
    const s = standIn(params);
    const m = await loadGpuModel<Inputs>(spec, s.target, bytes);
    s.failNext = new DriverError("device", "k3_matmul", "validation error: boom");
    const e = await errorOf(() => m.forward({ tokens: [1] }));
    expect(e).toBeInstanceOf(KilnError);
    expect([e.kind, e.where, e.message]).toEqual([
      "device",
      "k3_matmul",
      "k3_matmul: validation error: boom",
    ]);
    const bug = new TypeError("a bug");
    s.failNext = bug;
    expect(await errorOf(() => m.forward({ tokens: [1] }))).toBe(bug);
    // A param the driver misses: its "input" error, as a KilnError, from load.
    const short = standIn([...params, "nope"]);
    const missing = await errorOf(() => loadGpuModel(spec, short.target, bytes));
    expect(missing).toBeInstanceOf(KilnError);
    expect(missing.message).toBe('param "nope": missing');
  });

  it("destroy frees the session and the model once; later calls fail", async () => {
    const s = standIn(params);
    const m: GpuModel<Inputs> = await loadGpuModel<Inputs>(spec, s.target, bytes);
    m.destroy();
    m.destroy();
    expect(s.log).toEqual(["destroy session", "destroy model"]);
    const e = await errorOf(() => m.forward({ tokens: [1] }));
    expect([e.kind, e.message]).toEqual(["usage", "gpt2: the model was destroyed"]);
  });
});

// ── model.js as assembled ───────────────────────────────────────────────────────────────────

/** x ↦ gelu(x·w + tanh x): one map kernel, so it runs whatever other kernels exist yet. The
 *  param's name is given. */
function mapModel(param: string): ModelDef<Record<string, never>> {
  return defineModel({
    name: 'map"model*/',
    defaults: {},
    build(m) {
      m.bound("T", 16, "the test's context");
      const x = m.input("x", "f32", ["T"]);
      return gelu(add(mul(x, m.param(param, [1])), tanh(x)));
    },
  });
}

interface Compiled {
  readonly graph: Graph;
  readonly program: Program;
  readonly wgsl: WgslProgram;
  readonly files: Readonly<Record<string, string>>;
}

async function compileModel(def: ModelDef<Record<string, never>>): Promise<Compiled> {
  const graph = buildGraph(def, {});
  const opt = runPipeline(graph);
  const program = lower(opt.graph);
  const wgsl = emitWgsl(program, { limits: WEBGPU_DEFAULTS, graph: opt.graph, source: graph });
  const files = await buildWgslArtifact({
    graph,
    program,
    wgsl,
    model: { kind: "model", name: def.name, config: {} },
    passes: opt.stats.map((s) => s.name),
    kilnVersion: "test",
    limitsName: "WebGPU's default limits",
  });
  return { graph, program, wgsl, files };
}

const HOSTILE = 'evil"); globalThis.pwned = 1; ("*/\u2028';

/** Compiled once, on first use (each build type-checks a model.ts). */
const compiled = new Map<string, Promise<Compiled>>();
const compileOnce = (param: string) => {
  if (!compiled.has(param)) compiled.set(param, compileModel(mapModel(param)));
  return compiled.get(param)!;
};

describe("model.js as assembled", () => {
  let plain: Compiled;
  let hostile: Compiled;

  beforeAll(async () => {
    plain = await compileOnce("w");
    hostile = await compileOnce(HOSTILE);
  }, 120_000);

  it("the driver is runtime/webgpu/session.ts, copied whole; the program is what the driver reads", () => {
    const session = readFileSync(
      join(import.meta.dirname, "../../../../runtime/webgpu/session.ts"),
      "utf8",
    );
    expect(driverSource()).toBe(withoutExports({ path: "s", text: session }).trim());
    // Every function of the driver reaches model.js.
    const js = plain.files["model.js"];
    for (const [, name] of session.matchAll(/^(?:export )?(?:async )?function (\w+)/gm))
      expect(js).toContain(`function ${name}(`);
    const data = programData(plain.wgsl);
    expect(data.kernels.map((k) => k.name)).toEqual(plain.wgsl.kernels.map((k) => k.name));
    expect(JSON.stringify(data)).not.toContain("@compute");
  });

  it("files: one .wgsl per kernel, exactly its source; the manifest without sources", () => {
    const wgslFiles = Object.keys(plain.files).filter((f) => f.startsWith("kernels/"));
    expect(wgslFiles).toEqual(plain.wgsl.kernels.map((k) => `kernels/${k.name}.wgsl`));
    for (const k of plain.wgsl.kernels)
      expect(plain.files[`kernels/${k.name}.wgsl`]).toBe(k.source);
    const m = JSON.parse(plain.files["manifest.json"]);
    expect(m).toMatchObject({ kiln: "test", target: "wgsl", limits: WEBGPU_DEFAULTS });
    expect(m.kernels.map((k: { file: string }) => k.file)).toEqual(wgslFiles);
    expect(plain.files["manifest.json"]).not.toContain("@compute");
    expect(m.buffers).toHaveLength(plain.wgsl.buffers.length);
    expect(m.dims).toEqual(plain.wgsl.dims);
    expect(m.generate).toMatchObject({ available: false });
    expect(m.decoding).toBeNull();
    expect(Object.keys(plain.files).filter((f) => f.startsWith("kernels/decode/"))).toEqual([]);
    expect(plain.files["README.md"]).toMatch(/npm install webgpu/);
    expect(plain.files["README.md"]).toMatch(/navigator\.gpu\.requestAdapter/);
  });

  it("imports nothing but node:fs/promises, dynamically; load takes a device", () => {
    const js = plain.files["model.js"];
    expect(js).not.toMatch(/^\s*(import|export)\s.*\sfrom\s/m);
    expect(js).not.toMatch(/\brequire\s*\(/);
    expect([...js.matchAll(/\bimport\s*\(/g)].length).toBe(1);
    const names = new Set<string>();
    const visit = (n: ts.Node): void => {
      if (ts.isIdentifier(n)) names.add(n.text);
      ts.forEachChild(n, visit);
    };
    visit(ts.createSourceFile("model.js", js, ts.ScriptTarget.ES2022, true));
    // Nothing of Node's, and no WebGPU global (GPUBufferUsage…): only the device passed in.
    // (`module` is a local of the driver's: a shader module.)
    for (const g of ["Buffer", "process", "require", "__dirname", "global", "navigator"])
      expect(names.has(g)).toBe(false);
    expect([...names].filter((n) => /^GPU[A-Z]/.test(n))).toEqual([]);
    expect(plain.files["model.d.ts"]).toMatch(
      /export declare function load\(device: GPUDevice, source: ModelSource\): Promise<Model>;/,
    );
    expect(plain.files["model.d.ts"]).toMatch(/export interface Inputs \{[^}]*x: Sequence;/);
  });

  it("hostile names reach model.js, the manifest and the kernels only as strings and comment text", () => {
    const identifiers: string[] = [];
    const visit = (n: ts.Node): void => {
      if (ts.isIdentifier(n)) identifiers.push(n.text);
      ts.forEachChild(n, visit);
    };
    const js = hostile.files["model.js"];
    visit(ts.createSourceFile("model.js", js, ts.ScriptTarget.ES2022, true));
    expect(identifiers.filter((i) => /evil|pwned/.test(i))).toEqual([]);
    expect(js).not.toContain("\u2028");
    expect(JSON.parse(hostile.files["manifest.json"]).params).toEqual([
      { name: HOSTILE, shape: [1] },
    ]);
    for (const k of hostile.wgsl.kernels) expect(k.source).not.toContain("pwned = 1; (");
  });

  it("writeWgslArtifact writes every file and removes .wgsl files a previous compile left", () => {
    const dir = tempDir();
    writeWgslArtifact(dir, plain.files);
    writeFileSync(join(dir, "kernels", "k99_old.wgsl"), "// stale");
    writeFileSync(join(dir, "kernels", "notes.txt"), "mine");
    writeWgslArtifact(dir, plain.files);
    for (const f of Object.keys(plain.files))
      expect(readFileSync(join(dir, f), "utf8")).toBe(plain.files[f]);
    expect(existsSync(join(dir, "kernels", "k99_old.wgsl"))).toBe(false);
    expect(existsSync(join(dir, "kernels", "notes.txt"))).toBe(true);
  });
});

// ── on the test device ──────────────────────────────────────────────────────────────────────

const gpu = await testGpu();

interface ArtifactModule {
  load(device: unknown, source: unknown): Promise<GpuModel<Record<string, number[]>>>;
  KilnError: new (...a: never[]) => Error;
}

describe.skipIf(!gpu)("model.js on the test device", () => {
  it("loads from bytes and from a folder, and computes what the interpreter computes", async () => {
    const c = await compileOnce(HOSTILE);
    const dir = tempDir("kiln-wgsl-artifact-");
    writeWgslArtifact(dir, c.files);
    const mod = (await import(pathToFileURL(join(dir, "model.js")).href)) as ArtifactModule;
    const w = { name: HOSTILE, dtype: "F32" as const, shape: [1], data: Float32Array.of(0.75) };
    const bytes = writeSafetensors([w]);
    const ckpt = tempDir();
    writeFileSync(join(ckpt, "model.safetensors"), bytes);
    const x = [1, -2, 3, 0.25, -0.5];
    const session = createSession(c.program, (name) => (name === HOSTILE ? w.data : undefined));
    const want = Array.from(
      session.run(new Map([["x", ndarray([5], Float64Array.from(x))]]))[0].data,
    );
    for (const source of [bytes, bytes.slice().buffer, ckpt]) {
      const m = await mod.load(gpu!.device, source);
      const r = await m.forward({ x });
      expect([r.rows, r.cols]).toEqual([1, 5]);
      Array.from(r.logits).forEach((v, i) => expect(Math.abs(v - want[i])).toBeLessThan(1e-5));
      m.destroy();
    }
    const m = await mod.load(gpu!.device, bytes);
    const e = await errorOf(() => m.forward({ x: Array(17).fill(0) }));
    expect(e).toBeInstanceOf(mod.KilnError);
    expect(e.message).toBe("x: length 17 exceeds the test's context (16)");
    m.destroy();
    expect((globalThis as { pwned?: number }).pwned).toBeUndefined();
  }, 120_000);
});
