/** The loader of a compiled artifact: this file's declarations are copied into every `model.ts`
 *  (inline-source.ts), next to the generated kernels, the strict safetensors reader
 *  (runtime/safetensors.ts) and the sampler (runtime/generate.ts), so an artifact validates and
 *  samples exactly as kiln does. It is ordinary, type-checked kiln code; tests call it directly.
 *  The checks of `forward`'s and `generate`'s arguments are inputs.ts, copied alike. The WGSL
 *  artifact's loader (codegen/wgsl/artifact/runtime.ts) is copied next to them and reuses their
 *  reading and checks (hence the exports that model.ts drops).
 *
 *  What it does, in the artifact's words:
 *  - `load(source)` reads `model.safetensors` — from a checkpoint folder with node:fs (imported
 *    dynamically, so the module also loads in a browser), or from bytes anywhere — maps each
 *    tensor name to a param by the checkpoint layout the model was compiled for, refuses a
 *    missing, unexpected, doubly stored or mis-shaped tensor, and checks the folder's config.json
 *    (when there is one) against the config the model was compiled for: a file with the right
 *    shapes but another `n_head` would give wrong numbers silently.
 *  - `forward` checks every input (token ids inside their vocabulary, lengths within the
 *    context, lengths that share a dim equal) before any kernel runs.
 *  - `generate` is runtime/generate.ts's loop: greedy at temperature 0, else softmax(logits / t)
 *    over the top k, drawn with mulberry32 seeded by `seed` (default 0), so a seed gives the same
 *    tokens as `kiln generate --seed`. With a KV cache the prompt runs once and each new token is
 *    one cached step. */
import { fail, KilnError } from "../../../errors.ts";
import { sample, seededRandom } from "../../../../runtime/generate.ts";
import { parseSafetensors } from "../../../../runtime/safetensors.ts";
import { generateRequest, packModelInputs } from "./inputs.ts";

// ── what the compiler tells the loader (SPEC in model.ts) ───────────────────────────────────

export interface ArtifactSpec {
  /** The model kind ("gpt2", "seq2seq", or "model" for a DSL file) and its name. */
  readonly kind: string;
  readonly name: string;
  readonly inputs: readonly InputSpec[];
  /** The output forward returns: the graph's first. */
  readonly output: { readonly name: string; readonly shape: readonly (number | string)[] };
  /** Every param, by the name the kernels load it under, with its shape. */
  readonly params: readonly { readonly name: string; readonly shape: readonly number[] }[];
  readonly layout: LayoutSpec;
  /** config.json fields that must hold the values the model was compiled with. */
  readonly config: readonly ConfigCheck[];
  readonly kvCache: boolean;
  /** Why generate is unavailable; null when it is. */
  readonly noGenerate: string | null;
}

export interface InputSpec {
  /** The graph input's name, as the kernels take it. */
  readonly name: string;
  /** The property of `forward`'s argument that carries it (`src_tokens` → `srcTokens`). */
  readonly key: string;
  readonly dtype: string;
  /** "step": fed on every call and extended by decoding; "source": fed once per sequence. */
  readonly phase: string;
  /** The length: a number, or a dim symbol that the input's length binds. */
  readonly length: number | string;
  /** The longest length accepted, and why (null without a bound). */
  readonly maxLength: number | null;
  readonly why: string | null;
  /** Token ids must be < vocab (null: not token ids). */
  readonly vocab: number | null;
}

/** How checkpoint tensor names relate to params (runtime/checkpoint.ts's layouts, as data). */
export interface LayoutSpec {
  /** Prefixes a stored name may carry (`transformer.`): removed before matching. */
  readonly stripPrefixes: readonly string[];
  /** Regular expressions (source text) for known buffers that are not params: skipped. */
  readonly ignore: readonly string[];
}

export interface ConfigCheck {
  readonly key: string;
  readonly value: string | number | boolean | null;
  /** What a missing key means; undefined: it must be present. */
  readonly missing?: string | number | boolean | null;
}

// ── what the generated kernels provide (KERNELS in model.ts) ────────────────────────────────

/** An input as the kernels take it, and an output as they return it. */
export interface KernelTensor {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

export interface KernelOutput {
  readonly shape: readonly number[];
  readonly data: Float32Array | Int32Array;
}

export interface KernelSession {
  /** Every input, in the graph's order, the KV cache reset: outputs for every position. */
  run(inputs: readonly KernelTensor[]): KernelOutput[];
  /** Only the step inputs, for the new positions, decoded against the cache. */
  step(inputs: readonly KernelTensor[]): KernelOutput[];
}

export interface KernelModule {
  /** Takes every param by name; runs the load phase. */
  createSession(weights: (name: string) => ArrayLike<number> | undefined): KernelSession;
}

// ── the public API ─────────────────────────────────────────────────────────────────────────

/** A checkpoint folder (Node), a path to a .safetensors file (Node), or the file's bytes. */
export type ModelSource = string | Uint8Array | ArrayBuffer;

/** A sequence of token ids (or of numbers, for a float input): an array or a typed array. */
export type Sequence = ArrayLike<number>;

export interface ForwardResult {
  /** rows × cols, row-major: one row per position, one column per vocabulary entry. */
  readonly logits: Float32Array;
  readonly rows: number;
  readonly cols: number;
}

export interface GenerateSettings {
  /** How many tokens to generate. */
  readonly maxNewTokens: number;
  /** 0 (the default) is greedy; above 0 samples from softmax(logits / temperature). */
  readonly temperature?: number;
  /** Sample among the k most likely tokens only. */
  readonly topK?: number;
  /** The sampler's seed (default 0); kiln generate --seed uses the same generator. */
  readonly seed?: number;
}

export interface Model<I> {
  /** One forward pass over the whole sequence. */
  forward(inputs: I): ForwardResult;
  /** Continues `tokens`; returns only the new token ids. */
  generate(request: I & GenerateSettings): number[];
}

// ── loading ────────────────────────────────────────────────────────────────────────────────

interface NodeFs {
  readFile(path: string): Promise<Uint8Array>;
}

/** node:fs/promises, imported by a computed name so that bundlers leave it alone and a browser
 *  only fails when a path is actually given. */
async function nodeFileSystem(): Promise<NodeFs> {
  const name = "node:fs/promises";
  try {
    return (await import(/* @vite-ignore */ /* webpackIgnore: true */ name)) as NodeFs;
  } catch {
    return fail(
      "usage",
      "load",
      "a path needs Node's file system; elsewhere pass the bytes of model.safetensors (a Uint8Array or an ArrayBuffer)",
    );
  }
}

function errorCode(e: unknown): string {
  return typeof e === "object" && e !== null && "code" in e ? String(e.code) : "";
}

async function readBytes(fs: NodeFs, file: string): Promise<Uint8Array | undefined> {
  try {
    return await fs.readFile(file);
  } catch (e) {
    const code = errorCode(e);
    if (code === "ENOENT") return undefined;
    if (code === "EISDIR") return fail("safetensors", file, "is a directory, expected a file");
    return fail("safetensors", file, `cannot read (${code || String(e)})`);
  }
}

interface Loaded {
  readonly bytes: Uint8Array;
  /** The name errors give the weights file. */
  readonly file: string;
  readonly config?: { readonly file: string; readonly text: string };
}

export async function readSource(source: ModelSource): Promise<Loaded> {
  if (typeof source === "string") {
    const fs = await nodeFileSystem();
    const isFile = source.endsWith(".safetensors");
    const dir = isFile ? source.replace(/[^\\/]*$/, "") : source.replace(/[\\/]+$/, "") + "/";
    const file = isFile ? source : `${dir}model.safetensors`;
    const bytes = await readBytes(fs, file);
    if (!bytes)
      fail(
        "safetensors",
        file,
        isFile ? "file not found" : "file not found (a checkpoint folder holds model.safetensors)",
      );
    const configFile = `${dir}config.json`;
    const config = isFile ? undefined : await readBytes(fs, configFile);
    return {
      bytes,
      file,
      config: config && { file: configFile, text: new TextDecoder().decode(config) },
    };
  }
  if (ArrayBuffer.isView(source))
    return {
      bytes: new Uint8Array(source.buffer, source.byteOffset, source.byteLength),
      file: "model.safetensors",
    };
  if (Object.prototype.toString.call(source) === "[object ArrayBuffer]")
    return { bytes: new Uint8Array(source), file: "model.safetensors" };
  return fail(
    "usage",
    "load",
    "expected a checkpoint folder path, or the bytes of a model.safetensors (a Uint8Array or an ArrayBuffer)",
  );
}

export function checkConfig(spec: ArtifactSpec, file: string, text: string): void {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    fail("checkpoint", file, `not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof j !== "object" || j === null || Array.isArray(j))
    fail("checkpoint", file, "must hold a JSON object");
  const fields = j as Record<string, unknown>;
  for (const c of spec.config) {
    const has = Object.prototype.hasOwnProperty.call(fields, c.key);
    if (!has && c.missing === undefined)
      fail("checkpoint", file, `${JSON.stringify(c.key)} is missing`);
    const v = has ? fields[c.key] : c.missing;
    if (v !== c.value)
      fail(
        "checkpoint",
        file,
        `${JSON.stringify(c.key)} is ${JSON.stringify(v)}, but this artifact was compiled for ${JSON.stringify(c.value)}`,
      );
  }
}

/** The params by name, from the file's tensors, as runtime/checkpoint.ts matches them. */
export function matchParams(
  spec: ArtifactSpec,
  tensors: ReadonlyMap<string, { readonly shape: readonly number[]; readonly data: Float32Array }>,
  file: string,
): Map<string, Float32Array> {
  const want = new Map(spec.params.map((p) => [p.name, p.shape]));
  const ignore = spec.layout.ignore.map((s) => new RegExp(s));
  const weights = new Map<string, Float32Array>();
  const shapeText = (s: readonly number[]) => `[${s.join(",")}]`;
  for (const [name, t] of tensors) {
    const prefix = spec.layout.stripPrefixes.find((p) => name.startsWith(p));
    const param = prefix === undefined ? name : name.slice(prefix.length);
    if (ignore.some((r) => r.test(param))) continue;
    const shape = want.get(param);
    const where = `tensor ${JSON.stringify(name)}`;
    if (!shape) fail("checkpoint", file, `${where}: unexpected (not a parameter of ${spec.name})`);
    if (weights.has(param))
      fail("checkpoint", file, `${where}: stored twice (with and without a prefix)`);
    if (shapeText(t.shape) !== shapeText(shape))
      fail(
        "checkpoint",
        file,
        `${where}: shape ${shapeText(t.shape)} in the file, the model needs ${shapeText(shape)}`,
      );
    weights.set(param, t.data);
  }
  for (const [param, shape] of want)
    if (!weights.has(param))
      fail(
        "checkpoint",
        file,
        `tensor ${JSON.stringify(param)}: missing (the model needs f32${shapeText(shape)})`,
      );
  return weights;
}

// ── the model ──────────────────────────────────────────────────────────────────────────────

/** Calls into the kernels; their own errors (duck-typed: kind, where, detail) come out as
 *  KilnErrors like the loader's. */
function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (
      e instanceof Error &&
      "kind" in e &&
      "where" in e &&
      "detail" in e &&
      (e.kind === "input" || e.kind === "checkpoint")
    )
      throw new KilnError(e.kind, String(e.where), String(e.detail));
    throw e;
  }
}

/** The first output as rows × cols: cols its last dim, rows the product of the others. */
export function resultOf(outputs: readonly KernelOutput[]): ForwardResult {
  const out = outputs[0];
  const shape = out.shape;
  const cols = shape.length === 0 ? 1 : shape[shape.length - 1];
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const logits = out.data instanceof Float32Array ? out.data.slice() : Float32Array.from(out.data);
  return { logits, rows, cols };
}

export function finalRow(r: ForwardResult): Float32Array {
  return r.logits.subarray((r.rows - 1) * r.cols, r.rows * r.cols);
}

function makeModel<I>(spec: ArtifactSpec, session: KernelSession): Model<I> {
  const forward = (inputs: I): ForwardResult => {
    const packed = packModelInputs(spec, inputs as Readonly<Record<string, unknown>>);
    return resultOf(call(() => session.run(packed)));
  };
  return {
    forward,
    generate(request) {
      const { maxNewTokens, temperature, topK, seed, fields, packed, step, prompt } =
        generateRequest(spec, request);
      const rand = seededRandom(seed ?? 0);
      const out: number[] = [];
      if (maxNewTokens === 0) return out;
      const tokens = [...prompt];
      let logits = resultOf(call(() => session.run(packed)));
      for (let i = 0; i < maxNewTokens; i++) {
        const next = sample(finalRow(logits), temperature ?? 0, topK, rand);
        tokens.push(next);
        out.push(next);
        if (i + 1 === maxNewTokens) break;
        logits = spec.kvCache
          ? resultOf(call(() => session.step([{ shape: [1], data: Int32Array.of(next) }])))
          : forward({ ...fields, [step.key]: tokens } as I);
      }
      return out;
    },
  };
}

/** What `load` in model.ts calls with its SPEC and KERNELS. */
export async function loadModel<I>(
  spec: ArtifactSpec,
  kernels: KernelModule,
  source: ModelSource,
): Promise<Model<I>> {
  const src = await readSource(source);
  if (src.config) checkConfig(spec, src.config.file, src.config.text);
  const st = parseSafetensors(src.bytes, src.file);
  const weights = matchParams(spec, st.tensors, src.file);
  const session = call(() => kernels.createSession((name) => weights.get(name)));
  return makeModel<I>(spec, session);
}
