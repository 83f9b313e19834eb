/** One backend's side of a bench run, in its own process (started by run.ts through worker.mjs):
 *  loads the backend, warms it up on a short prompt (whose logits the parent compares across
 *  backends), runs every figure, and writes the result as JSON to the file it was given.
 *  Progress goes to stderr, one line per step. */
import { writeFileSync } from "node:fs";
import { KilnError } from "../compiler/errors.ts";
import type { GPT2Config } from "../models/gpt2.ts";
import { BACKENDS } from "./backends.ts";
import {
  CHECK_TOKENS,
  runFigures,
  tokenIds,
  type FigureId,
  type Measured,
  type RunSettings,
} from "./figures.ts";
import { checkLogits, peakRssMb, timeOnce, type Backend, type BackendEntry } from "./harness.ts";

export interface WorkerSpec {
  readonly backend: string;
  readonly checkpointDir: string;
  readonly config: GPT2Config;
  readonly settings: RunSettings;
  readonly resultPath: string;
}

export type WorkerResult =
  | {
      readonly ok: true;
      readonly name: string;
      readonly side: "kiln" | "peer";
      readonly description: string;
      readonly notes: readonly string[];
      readonly load_ms: number;
      readonly rss_mb: number;
      readonly figures: Record<FigureId, Measured>;
      readonly check_logits: number[];
    }
  | {
      readonly ok: false;
      readonly error: { kind: KilnError["kind"]; where: string; detail: string };
    };

async function load(name: string, entry: BackendEntry) {
  try {
    return await entry.load();
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === "ERR_MODULE_NOT_FOUND" && /@tensorflow/.test(String(e)))
      throw new KilnError(
        "usage",
        `--backends ${name}`,
        "needs the dev dependencies @tensorflow/tfjs-core and @tensorflow/tfjs-backend-cpu: " +
          "run npm install in kiln's folder, or leave it out of --backends",
      );
    throw e;
  }
}

async function run(spec: WorkerSpec): Promise<WorkerResult> {
  const say = (line: string) => void process.stderr.write(`${line}\n`);
  const entry = BACKENDS[spec.backend];
  if (!entry) throw new Error(`no backend ${JSON.stringify(spec.backend)}`);
  const create = await load(spec.backend, entry);
  const t0 = process.hrtime.bigint();
  const b: Backend = await create({ checkpointDir: spec.checkpointDir, config: spec.config });
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  say(`${b.name}: loaded in ${(loadMs / 1000).toFixed(1)} s`);
  try {
    const prompt = tokenIds(CHECK_TOKENS, spec.config.vocab_size, spec.settings.seed);
    let check: ArrayLike<number> = [];
    const warm = await timeOnce(async () => (check = await b.prefill(prompt)));
    checkLogits(b.name, check, spec.config.vocab_size);
    say(`${b.name}: warm-up prefill of ${CHECK_TOKENS} tokens: ${warm.toFixed(0)} ms`);
    const figures = await runFigures(b, spec.config, spec.settings, say);
    return {
      ok: true,
      name: b.name,
      side: b.side,
      description: b.description,
      notes: b.notes,
      load_ms: loadMs,
      rss_mb: peakRssMb(),
      figures,
      check_logits: Array.from(check),
    };
  } finally {
    b.dispose?.();
  }
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? "") as WorkerSpec;
  let result: WorkerResult;
  try {
    result = await run(spec);
  } catch (e) {
    if (!(e instanceof KilnError)) throw e; // a bug: the stack goes to stderr, the parent shows it
    result = { ok: false, error: { kind: e.kind, where: e.where, detail: e.detail } };
  }
  writeFileSync(spec.resultPath, JSON.stringify(result));
}

await main();
