/** What `kiln bench` drives and how it times it: the Backend interface (kiln's paths and the peers
 *  implement it), timing (a discarded first run, then repetitions inside a time budget; median and
 *  min by process.hrtime.bigint), and peak RSS. Nothing here asserts on time: it only measures. */
import type { GPT2Config } from "../models/gpt2.ts";

/** One figure's work, as data: the figure table (figures.ts) says what to run, a backend may say
 *  why it will not run it (Backend.skip). */
export type Work =
  | { readonly kind: "prefill"; readonly tokens: number }
  | { readonly kind: "decode"; readonly past: number; readonly cache: boolean }
  | { readonly kind: "matmul"; readonly m: number; readonly k: number; readonly n: number };

/** A value, or a promise of it: the CPU backends answer at once, a GPU backend asynchronously. */
export type Maybe<T> = T | Promise<T>;

/** A KV cache a backend keeps between calls. */
export interface DecodeCache {
  /** Runs one token after the cached positions, appends its K/V; returns its logits. */
  step(token: number): Maybe<ArrayLike<number>>;
  /** Drops every cached position from `length` on, so a step can be timed again at one length. */
  rewind(length: number): Maybe<void>;
  /** How many positions the cache holds. */
  readonly length: number;
}

/** One prepared matrix multiply: inputs made once, `run` multiplies (m×k)·(k×n) once. */
export interface MatmulRun {
  run(): void;
  dispose?(): void;
}

/** A way to run the model: kiln's reference path, kiln's generated kernels (to come), a peer.
 *  All of one run's backends compute the same GPT-2 from the same checkpoint. */
export interface Backend {
  /** As `--backends` names it: "ref", "tfjs", later "ts". */
  readonly name: string;
  /** Which column of the report it fills. */
  readonly side: "kiln" | "peer";
  /** One line for the report: what it is, with versions. */
  readonly description: string;
  /** Things to know when reading its figures (printed under the table). */
  readonly notes: readonly string[];
  /** Runs the prompt from an empty cache (keeping its K/V where the backend has a cache);
   *  returns the logits of the last position. */
  prefill(tokens: readonly number[]): Maybe<ArrayLike<number>>;
  /** The logits of the last position, recomputing every position (no cache). */
  forwardNoCache(tokens: readonly number[]): Maybe<ArrayLike<number>>;
  /** The cache `prefill` filled; absent where the backend has none. */
  readonly cache?: DecodeCache;
  /** A float32 matrix multiply of the backend's own, for the matmul figures. */
  matmul?(m: number, k: number, n: number): MatmulRun;
  /** Why this backend does not run a figure (too slow, by design); undefined: it runs it. */
  skip?(work: Work): string | undefined;
  dispose?(): void;
}

/** What a backend factory is given: the checkpoint every backend of the run loads. */
export interface BackendContext {
  readonly checkpointDir: string;
  readonly config: GPT2Config;
}

export interface BackendEntry {
  readonly side: "kiln" | "peer";
  /** Loaded on demand, so a missing optional dependency only matters when it is asked for. */
  readonly load: () => Promise<(ctx: BackendContext) => Backend | Promise<Backend>>;
}

// ---- timing ----

export interface Timing {
  /** Timed repetitions (the median and min are over these). */
  readonly reps: number;
  /** Untimed first runs (0 when a single run already filled the budget). */
  readonly warmup: number;
  readonly median_ms: number;
  readonly min_ms: number;
}

export interface MeasureOptions {
  /** Keep repeating until this much time has been spent on timed runs… */
  readonly budgetMs: number;
  /** …or this many timed runs were made. */
  readonly maxReps: number;
}

/** Wall time of one call, in milliseconds. */
export async function timeOnce(run: () => Maybe<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await run();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Times `run`. The first run warms up (JIT, allocations) and is discarded, unless it alone used
 *  the budget or only one run is allowed: then it is the one sample, so a slow figure costs one
 *  run, not two. `setup` runs untimed before every run (e.g. rewinding a cache). */
export async function measure(
  run: () => Maybe<unknown>,
  o: MeasureOptions,
  setup?: () => Maybe<unknown>,
): Promise<Timing> {
  const timed = async (): Promise<number> => {
    await setup?.();
    return timeOnce(run);
  };
  const first = await timed();
  if (o.maxReps <= 1 || first >= o.budgetMs)
    return { reps: 1, warmup: 0, median_ms: first, min_ms: first };
  const samples: number[] = [];
  let spent = 0;
  while (samples.length < o.maxReps && (samples.length === 0 || spent < o.budgetMs)) {
    const t = await timed();
    samples.push(t);
    spent += t;
  }
  return {
    reps: samples.length,
    warmup: 1,
    median_ms: median(samples),
    min_ms: Math.min(...samples),
  };
}

/** Times several calls alternately — one timed run of each per round, so a slow phase of the host
 *  hits them alike — with `measure`'s rules for all of them together: each one's first run is
 *  discarded (unless one run is allowed, or the first round alone used the budget), then rounds
 *  repeat until `budgetMs` was spent on all of them together or `maxReps` rounds were made. */
export async function measureAlternately(
  runs: readonly (() => Maybe<unknown>)[],
  o: MeasureOptions,
): Promise<Timing[]> {
  const round = async (): Promise<number[]> => {
    const ts: number[] = [];
    for (const run of runs) ts.push(await timeOnce(run));
    return ts;
  };
  const total = (ts: readonly number[]) => ts.reduce((s, t) => s + t, 0);
  const first = await round();
  if (o.maxReps <= 1 || total(first) >= o.budgetMs)
    return first.map((t) => ({ reps: 1, warmup: 0, median_ms: t, min_ms: t }));
  const samples = runs.map((): number[] => []);
  let spent = 0;
  for (let reps = 0; reps < o.maxReps && (reps === 0 || spent < o.budgetMs); reps++) {
    const ts = await round();
    ts.forEach((t, i) => samples[i].push(t));
    spent += total(ts);
  }
  return samples.map((xs) => ({
    reps: xs.length,
    warmup: 1,
    median_ms: median(xs),
    min_ms: Math.min(...xs),
  }));
}

// ---- memory ----

/** The process's peak resident set so far, in MB (the kernel's high-water mark: it sees
 *  allocations between samples that sampling memoryUsage() would miss). */
export function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024; // maxRSS is in kilobytes
}

/** The logits a backend returned are a row of the vocabulary, every value finite: a backend that
 *  returns garbage fast must not look fast. */
export function checkLogits(backend: string, logits: ArrayLike<number>, vocab: number): void {
  if (logits.length !== vocab)
    throw new Error(`backend ${backend}: logits have ${logits.length} entries, vocab is ${vocab}`);
  for (let i = 0; i < logits.length; i++)
    if (!Number.isFinite(logits[i]))
      throw new Error(`backend ${backend}: logit ${i} is ${logits[i]}`);
}
