/** The figures `kiln bench` reports, as data, and how one backend's figures are run. Shapes are
 *  fixed (they name the JSON keys); the model's size only changes how long each takes. */
import { assertNever } from "../compiler/errors.ts";
import type { GPT2Config } from "../models/gpt2.ts";
import { seededRandom } from "../runtime/generate.ts";
import {
  checkLogits,
  measure,
  measureAlternately,
  type Backend,
  type MeasureOptions,
  type Timing,
  type Work,
} from "./harness.ts";
import { plainJs4x4 } from "./yardstick.ts";

export interface Figure {
  readonly id: string;
  readonly label: string;
  readonly unit: string;
  readonly better: "higher" | "lower";
  readonly work: Work;
}

/** The context the figures need: T = 256 prefills and a decode after 255 positions. */
export const MIN_POSITIONS = 256;

/** Before a matmul figure (runOne): calls for WARM_MS (at least three), then a pause of SETTLE_MS;
 *  then up to MATMUL_MAX_REPS timed calls of the kernel and as many of the yardstick, alternately,
 *  within twice the time budget (each gets about one budget). */
const MATMUL_MAX_REPS = 500;
const WARM_MS = 500;
const SETTLE_MS = 1000;

/** The prompt every backend warms up on; its last logits are the cross-backend check. */
export const CHECK_TOKENS = 8;

export const FIGURES = [
  {
    id: "prefill_t64_tokens_per_s",
    label: "prefill T=64",
    unit: "tokens/s",
    better: "higher",
    work: { kind: "prefill", tokens: 64 },
  },
  {
    id: "prefill_t256_tokens_per_s",
    label: "prefill T=256",
    unit: "tokens/s",
    better: "higher",
    work: { kind: "prefill", tokens: 256 },
  },
  {
    id: "decode_kv_ms_per_token",
    label: "decode, KV cache, past 255",
    unit: "ms/token",
    better: "lower",
    work: { kind: "decode", past: 255, cache: true },
  },
  {
    id: "decode_nocache_ms_per_token",
    label: "decode, no cache, past 255",
    unit: "ms/token",
    better: "lower",
    work: { kind: "decode", past: 255, cache: false },
  },
  {
    id: "matmul_64x768x768_gflop_s",
    label: "matmul 64×768×768",
    unit: "GFLOP/s",
    better: "higher",
    work: { kind: "matmul", m: 64, k: 768, n: 768 },
  },
  {
    id: "matmul_128x768x3072_gflop_s",
    label: "matmul 128×768×3072",
    unit: "GFLOP/s",
    better: "higher",
    work: { kind: "matmul", m: 128, k: 768, n: 3072 },
  },
] as const satisfies readonly Figure[];

export type FigureId = (typeof FIGURES)[number]["id"];

/** Floating-point operations of one forward pass over `tokens` new positions after `past` cached
 *  ones, with the LM head on `logitRows` rows (multiply-adds count two). */
export function forwardFlops(
  c: GPT2Config,
  tokens: number,
  past: number,
  logitRows: number,
): number {
  const C = c.n_embd;
  const proj = 2 * tokens * (3 * C * C + C * C + 2 * 4 * C * C); // c_attn, c_proj, c_fc, mlp c_proj
  const attn = 2 * 2 * tokens * (past + tokens) * C; // q·kᵀ and p·v over all heads
  return c.n_layer * (proj + attn) + 2 * logitRows * C * c.vocab_size;
}

/** A value and how it was timed. */
export interface Timed {
  readonly value: number;
  readonly timing: Timing;
}

/** One figure from one backend: a value, or why there is none. A matmul figure also has the
 *  plain-JS yardstick's GFLOP/s (bench/yardstick.ts), timed alternately with the kernel in the same
 *  process. */
export type Measured = (Timed & { readonly yardstick?: Timed }) | { readonly skipped: string };

export interface RunSettings {
  readonly measure: MeasureOptions;
  /** Seeds the token ids (the weights come from the checkpoint's seed). */
  readonly seed: number;
}

/** Deterministic token ids in [0, vocab). */
export function tokenIds(n: number, vocab: number, seed: number): number[] {
  const rand = seededRandom(seed);
  return Array.from({ length: n }, () => Math.floor(rand() * vocab));
}

/** Runs every figure on one backend, in table order (the T=256 prefill leaves the cache that the
 *  decode figure rewinds to 255). `progress` hears one line per figure. */
export async function runFigures(
  b: Backend,
  config: GPT2Config,
  s: RunSettings,
  progress: (line: string) => void = () => {},
): Promise<Record<FigureId, Measured>> {
  const vocab = config.vocab_size;
  const ids = tokenIds(MIN_POSITIONS, vocab, s.seed);
  const out = {} as Record<FigureId, Measured>;
  // The lone-kernel figures first: right after the model figures, a process (its threads' and
  // V8's background work, its garbage) timed the same kernel up to 30% slower for about a second
  // (runOne also warms each kernel up and pauses before timing it).
  const order = [...FIGURES].sort(
    (a, b) => Number(b.work.kind === "matmul") - Number(a.work.kind === "matmul"),
  );
  for (const f of order) {
    const why = b.skip?.(f.work);
    const m: Measured = why ? { skipped: why } : await runOne(b, f.work, ids, vocab, s.measure);
    out[f.id] = m;
    progress(
      `${b.name}: ${f.label}: ` +
        ("skipped" in m ? `skipped (${m.skipped})` : `${m.value.toPrecision(4)} ${f.unit}`),
    );
  }
  return out;
}

async function runOne(
  b: Backend,
  w: Work,
  ids: readonly number[],
  vocab: number,
  o: MeasureOptions,
): Promise<Measured> {
  switch (w.kind) {
    case "prefill": {
      const prompt = ids.slice(0, w.tokens);
      const timing = await measure(
        async () => checkLogits(b.name, await b.prefill(prompt), vocab),
        o,
      );
      return { value: w.tokens / (timing.median_ms / 1000), timing };
    }
    case "decode": {
      const prefix = ids.slice(0, w.past);
      const next = ids[w.past];
      if (!w.cache) {
        const all = [...prefix, next];
        const timing = await measure(
          async () => checkLogits(b.name, await b.forwardNoCache(all), vocab),
          o,
        );
        return { value: timing.median_ms, timing };
      }
      const cache = b.cache;
      if (!cache) return { skipped: "no KV cache" };
      // The T=256 prefill before this left 256 positions of the same ids: rewinding is enough.
      if (cache.length < w.past) await b.prefill(prefix);
      const timing = await measure(
        async () => checkLogits(b.name, await cache.step(next), vocab),
        o,
        () => cache.rewind(w.past),
      );
      return { value: timing.median_ms, timing };
    }
    case "matmul": {
      if (!b.matmul) return { skipped: "no matmul of its own" };
      const mm = b.matmul(w.m, w.k, w.n);
      const yard = plainJs4x4(w.m, w.k, w.n);
      try {
        if (o.maxReps > 1) {
          // Warm both up, then give V8's background compiler and collector (and a backend's
          // worker threads) a second to finish: the timed calls run optimized code in a quiet
          // process, not V8 still tiering the functions up.
          const until = performance.now() + WARM_MS;
          for (let i = 0; i < 3 || performance.now() < until; i++) {
            mm.run();
            yard.run();
          }
          await new Promise((r) => setTimeout(r, SETTLE_MS));
        }
        // the whole time budget, not ten calls: ten 20-ms calls time a fifth of a second,
        // which a slow phase of the host (README, development notes) covers whole
        const [timing, yardTiming] = await measureAlternately([() => mm.run(), yard.run], {
          budgetMs: 2 * o.budgetMs,
          maxReps: o.maxReps > 1 ? Math.max(o.maxReps, MATMUL_MAX_REPS) : o.maxReps,
        });
        return {
          value: (2 * w.m * w.k * w.n) / (timing.median_ms * 1e6),
          timing,
          yardstick: { value: yard.flops / (yardTiming.median_ms * 1e6), timing: yardTiming },
        };
      } finally {
        mm.dispose?.();
      }
    }
    default:
      return assertNever(w, "work");
  }
}
