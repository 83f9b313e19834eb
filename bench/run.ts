/** A whole bench run: writes one random checkpoint, runs each backend on it in a process of its
 *  own (worker.ts), and joins their figures into one report: per figure the kiln value, the peer
 *  value and their ratio, oriented so that > 1 always means kiln is better. */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { KilnError, fail } from "../compiler/errors.ts";
import type { GPT2Config } from "../models/gpt2.ts";
import { randomTensors, writeRandomCheckpoint } from "../scripts/random-checkpoint.ts";
import { BACKENDS } from "./backends.ts";
import {
  CHECK_TOKENS,
  FIGURES,
  MIN_POSITIONS,
  type FigureId,
  type Measured,
  type RunSettings,
} from "./figures.ts";
import type { Timing } from "./harness.ts";
import { plural } from "./report.ts";
import type { WorkerResult, WorkerSpec } from "./worker.ts";

export interface BenchOptions {
  readonly config: GPT2Config;
  /** Seeds the weights and the token ids. */
  readonly seed: number;
  /** At most one kiln backend and one peer, by name (BACKENDS). */
  readonly backends: readonly string[];
  /** One run per figure instead of repetitions within a time budget. */
  readonly quick: boolean;
}

/** GPT-2's initializer scale: random weights with realistic magnitudes. */
const WEIGHT_STD = 0.02;

export function settingsFor(o: Pick<BenchOptions, "quick" | "seed">): RunSettings {
  return {
    seed: o.seed,
    measure: o.quick ? { budgetMs: 0, maxReps: 1 } : { budgetMs: 3000, maxReps: 10 },
  };
}

/** A kiln value, a peer value, and kiln's advantage (> 1: kiln better), null where missing. */
export interface Pair {
  readonly kiln: number | null;
  readonly peer: number | null;
  readonly ratio: number | null;
}

export interface FigureReport extends Pair {
  readonly label: string;
  readonly unit: string;
  readonly better: "higher" | "lower";
  readonly timing: { readonly kiln?: Timing; readonly peer?: Timing };
  readonly skipped: { readonly kiln?: string; readonly peer?: string };
  /** Matmul figures: the plain-JS yardstick's GFLOP/s (bench/yardstick.ts), timed alternately
   *  with each side's kernel in that side's process; null where that side ran none. */
  readonly yardstick?: { readonly kiln: number | null; readonly peer: number | null };
}

export interface BackendInfo {
  readonly name: string;
  readonly description: string;
  readonly load_ms: number;
  readonly notes: readonly string[];
}

export interface BenchReport {
  readonly model: GPT2Config & { readonly params: number; readonly seed: number };
  readonly machine: {
    readonly cpus: number;
    readonly cpu: string;
    readonly node: string;
    readonly platform: string;
    /** The 1-minute load average before and after the run: above the CPU count, other work
     *  competed with the bench and its figures are low. */
    readonly load_avg: { readonly start: number; readonly end: number };
  };
  readonly settings: RunSettings;
  readonly backends: { readonly kiln: BackendInfo | null; readonly peer: BackendInfo | null };
  readonly figures: Record<FigureId, FigureReport>;
  /** Each backend's peak resident set, in its own process (lower is better). */
  readonly rss_mb: Pair;
  /** The last-position logits of the warm-up prompt, kiln's against the peer's. */
  readonly agreement: {
    readonly tokens: number;
    readonly max_rel_diff: number;
    readonly same_argmax: boolean;
  } | null;
}

/** Which backend fills which column; every mistake is a usage error naming the flag. */
export function chooseBackends(names: readonly string[]): { kiln?: string; peer?: string } {
  const out: { kiln?: string; peer?: string } = {};
  if (names.length === 0) fail("usage", "--backends", "name at least one backend");
  for (const n of names) {
    const e = Object.prototype.hasOwnProperty.call(BACKENDS, n) ? BACKENDS[n] : undefined;
    if (!e)
      fail(
        "usage",
        "--backends",
        `unknown backend ${JSON.stringify(n)} (${Object.keys(BACKENDS).join(", ")})`,
      );
    if (out[e.side])
      fail(
        "usage",
        "--backends",
        `${out[e.side]} and ${n} are both ${e.side} backends; give one of each`,
      );
    out[e.side] = n;
  }
  return out;
}

export function checkConfig(c: GPT2Config): void {
  if (c.n_positions < MIN_POSITIONS)
    fail(
      "usage",
      "--config n_positions",
      `the bench prefills ${MIN_POSITIONS} tokens; n_positions must be at least ${MIN_POSITIONS}, got ${c.n_positions}`,
    );
}

/** Runs worker.mjs for one backend; resolves with its result, forwarding its progress lines. */
function runWorker(spec: WorkerSpec, progress: (line: string) => void): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(import.meta.dirname, "worker.mjs"), JSON.stringify(spec)],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let log = "";
    let partial = "";
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (d: string) => void (log += d));
    child.stderr.on("data", (d: string) => {
      const lines = (partial + d).split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) progress(l);
      log += d;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (partial) progress(partial);
      let result: WorkerResult | undefined;
      try {
        result = JSON.parse(readFileSync(spec.resultPath, "utf8")) as WorkerResult;
      } catch {
        result = undefined;
      }
      if (result && (code === 0 || !result.ok)) return resolve(result);
      const how = signal ? `killed by ${signal}` : `exit code ${code}`;
      reject(new Error(`bench backend ${spec.backend} failed (${how}):\n${log.slice(-4000)}`));
    });
  });
}

const better = (f: { better: "higher" | "lower" }, kiln: number, peer: number) =>
  f.better === "higher" ? kiln / peer : peer / kiln;

function pair(f: { better: "higher" | "lower" }, kiln: number | null, peer: number | null): Pair {
  const ratio =
    kiln !== null && peer !== null && kiln > 0 && peer > 0 ? better(f, kiln, peer) : null;
  return { kiln, peer, ratio };
}

type Ok = Extract<WorkerResult, { ok: true }>;

function figureReport(f: (typeof FIGURES)[number], k?: Ok, p?: Ok): FigureReport {
  const value = (r?: Ok) => {
    const m: Measured | undefined = r?.figures[f.id];
    return m && "value" in m ? m.value : null;
  };
  const timing: { kiln?: Timing; peer?: Timing } = {};
  const skipped: { kiln?: string; peer?: string } = {};
  for (const [side, r] of [
    ["kiln", k],
    ["peer", p],
  ] as const) {
    const m = r?.figures[f.id];
    if (m && "timing" in m) timing[side] = m.timing;
    if (m && "skipped" in m) skipped[side] = m.skipped;
  }
  const yardstick = (r?: Ok) => {
    const m: Measured | undefined = r?.figures[f.id];
    return m && "yardstick" in m && m.yardstick ? m.yardstick.value : null;
  };
  return {
    label: f.label,
    unit: f.unit,
    better: f.better,
    ...pair(f, value(k), value(p)),
    timing,
    skipped,
    ...(f.work.kind === "matmul" ? { yardstick: { kiln: yardstick(k), peer: yardstick(p) } } : {}),
  };
}

function agreement(k?: Ok, p?: Ok): BenchReport["agreement"] {
  if (!k || !p) return null;
  const [a, b] = [k.check_logits, p.check_logits];
  let worst = 0;
  for (let i = 0; i < b.length; i++)
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  const argmax = (x: number[]) => x.reduce((best, v, i) => (v > x[best] ? i : best), 0);
  return { tokens: CHECK_TOKENS, max_rel_diff: worst, same_argmax: argmax(a) === argmax(b) };
}

const info = (r?: Ok): BackendInfo | null =>
  r ? { name: r.name, description: r.description, load_ms: r.load_ms, notes: r.notes } : null;

export async function runBench(
  o: BenchOptions,
  progress: (line: string) => void = () => {},
): Promise<BenchReport> {
  checkConfig(o.config);
  const sides = chooseBackends(o.backends);
  const settings = settingsFor(o);
  const loadStart = loadavg()[0];
  const dir = mkdtempSync(join(tmpdir(), "kiln-bench-"));
  try {
    progress(`writing a random checkpoint (${plural(o.config.n_layer, "layer")}) to ${dir}`);
    const model = { kind: "gpt2" as const, config: o.config };
    const tensors = randomTensors(model, o.seed, WEIGHT_STD);
    const params = tensors.reduce((s, t) => s + t.data.length, 0);
    writeRandomCheckpoint(join(dir, "ckpt"), model, o.seed, tensors);
    const results: { kiln?: Ok; peer?: Ok } = {};
    for (const side of ["kiln", "peer"] as const) {
      const name = sides[side];
      if (!name) continue;
      const r = await runWorker(
        {
          backend: name,
          checkpointDir: join(dir, "ckpt"),
          config: o.config,
          settings,
          resultPath: join(dir, `${name}.json`),
        },
        progress,
      );
      if (!r.ok) throw new KilnError(r.error.kind, r.error.where, r.error.detail);
      results[side] = r;
    }
    const { kiln: k, peer: p } = results;
    const figures = {} as Record<FigureId, FigureReport>;
    for (const f of FIGURES) figures[f.id] = figureReport(f, k, p);
    const cpu = cpus();
    return {
      model: { ...o.config, params, seed: o.seed },
      machine: {
        cpus: cpu.length,
        cpu: cpu[0]?.model ?? "unknown",
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        load_avg: { start: loadStart, end: loadavg()[0] },
      },
      settings,
      backends: { kiln: info(k), peer: info(p) },
      figures,
      rss_mb: pair({ better: "lower" }, k?.rss_mb ?? null, p?.rss_mb ?? null),
      agreement: agreement(k, p),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
