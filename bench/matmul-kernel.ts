/** Single-threaded GFLOP/s of the generated TypeScript matmul kernel (compiler/codegen/ts/matmul.ts)
 *  for several schedules, at the GPT-2 shapes (M×K×N): 64×768×768, 128×768×3072, 256×768×2304,
 *  plus M = 1 (decode). 2·M·K·N flops per call; the median of timed calls after a discarded one.
 *
 *    node --import tsx/esm bench/matmul-kernel.ts [--schedules 3x3s4,4x8s1] [--budget-ms 1500] [--epilogue "add(acc, $0)"]
 *
 *  Not `npx tsx`: its CommonJS hook detaches an ArrayBuffer while loading typescript, and from
 *  then on V8 checks typed-array accesses for detachment (slower kernels; README, development
 *  notes). `node --trace-protector-invalidation` shows whether a run was affected.
 *
 *  A schedule is ROWSxCOLSsSPAN: blocks of ROWS×COLS, panels COLS wide, SPAN panels per pass of
 *  the one-row kernel (matmul.ts's Schedule).
 *
 *  The first row is a yardstick measured in the same race: the classic hand-written 4×4 loop
 *  (peers.md's "plain JS, 4×4 register blocking", 4.7 GFLOP/s on the AVX-512 3.5 GHz machine
 *  measured there). Read the generated kernels against it: on the 2-core AMD EPYC (Zen 3, no
 *  AVX-512) this was written on, the yardstick ran 2.4–3.0 and 3×3 with span 4 (the default)
 *  4.1–4.5 (best calls); 4×4 and 4×8 blocks 3.3–4.1: their accumulators spill.
 *
 *  The kernel source is transpiled with TypeScript and instantiated with `new Function` — here,
 *  in a benchmark, only; the runtime never evaluates generated strings. Each schedule and shape
 *  gets its own instance, so V8's type feedback for one never slows another. */
import ts from "typescript";
import { parseExpr, type Expr } from "../compiler/ir/expr.ts";
import { renderHelpers } from "../compiler/codegen/helpers.ts";
import {
  DEFAULT_SCHEDULE,
  renderMatmul,
  renderPackB,
  type Schedule,
  type MatmulSpec,
} from "../compiler/codegen/ts/matmul.ts";

const SHAPES: readonly (readonly [number, number, number])[] = [
  [64, 768, 768],
  [128, 768, 3072],
  [256, 768, 2304],
  [1, 768, 3072],
];

const DEFAULT_SCHEDULES = ["3x3s4", "3x3s2", "3x3s1", "4x4s2", "4x8s1", "2x6s2", "3x4s3", "2x4s2"];

type Kernel = (...args: unknown[]) => void;
type Pack = (b: Float32Array, off: number) => Float32Array;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function parseSchedule(s: string): Schedule {
  const m = /^(\d+)x(\d+)s(\d+)$/.exec(s);
  if (!m) throw new Error(`--schedules: ${s} is not ROWSxCOLSsSPAN (e.g. 3x3s4)`);
  return { rows: Number(m[1]), cols: Number(m[2]), span: Number(m[3]) };
}

const label = (s: Schedule) => `${s.rows}×${s.cols}, span ${s.span}`;

/** The generated module as functions (benchmark only: see the header). */
function instantiate(spec: MatmulSpec): { kernel: Kernel; pack: Pack } {
  const kernel = renderMatmul(spec);
  const pack = renderPackB(spec, kernel.name);
  const source = [renderHelpers(kernel.helpers, "ts"), pack.source, kernel.source].join("\n");
  const js = ts.transpileModule(source, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
  }).outputText;
  const body = `${js.replace(/^export /gm, "")}\nreturn [${kernel.name}, ${pack.name}];`;
  const [k, p] = new Function(body)() as [Kernel, Pack];
  return { kernel: k, pack: p };
}

function random(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

type Shape = readonly [m: number, k: number, n: number];

/** The generated kernel for one schedule and shape, ready to call. */
function generated(schedule: Schedule, [m, k, n]: Shape, expr: Expr): () => void {
  const extras = expr.k === "acc" ? [] : [{ name: "bias", rowStride: 0, colStride: 1 }];
  const spec: MatmulSpec = {
    name: "bench_matmul",
    irLine: `%y = matmul_epilogue(%x, %w) : f32[${m},${n}]`,
    K: k,
    N: n,
    transposeB: false,
    expr,
    a: { name: "x", colStride: 1 },
    b: { name: "w" },
    extras,
    out: { name: "y" },
    schedule,
  };
  const { kernel, pack } = instantiate(spec);
  const a = random(m * k, 1);
  const w = pack(random(k * n, 2), 0);
  const bias = random(n, 3);
  const out = new Float32Array(m * n);
  const args = extras.length ? [a, 0, k, w, bias, 0, out, 0, m] : [a, 0, k, w, out, 0, m];
  return () => kernel(...args);
}

/** GFLOP/s per second of this process's CPU time, which other processes taking turns on the
 *  cores do not count against (they still slow it through shared caches and, in a VM, through
 *  the host's other guests). */
interface Rate {
  /** Of the median call. */
  readonly median: number;
  /** Of the fastest call: the least disturbed, the best guess at what the code itself can do. */
  readonly best: number;
}

const median = (xs: readonly number[]): number => [...xs].sort((p, q) => p - q)[xs.length >> 1];

/** Calls every contestant once to warm it up, then round after round one timed call of each
 *  (interleaved, so a busy spell of the machine hits all of them alike) until the budget is
 *  spent. */
function race(runs: readonly (() => void)[], flops: number, budgetMs: number): Rate[] {
  for (const run of runs) run();
  const ms = runs.map((): number[] => []);
  const end = performance.now() + budgetMs;
  for (let round = 0; round < 5 || (performance.now() < end && round < 1000); round++)
    runs.forEach((run, n) => {
      const c = process.cpuUsage();
      run();
      const d = process.cpuUsage(c);
      ms[n].push((d.user + d.system) / 1000);
    });
  return ms.map((t) => ({
    median: flops / (median(t) * 1e6),
    best: flops / (Math.min(...t) * 1e6),
  }));
}

/** The yardstick: the classic hand-written 4×4 register-blocked loop on row-major b, unpacked
 *  (what peers.md's "plain JS, 4×4 register blocking ≈ 4.7 GFLOP/s" measures). */
function handWritten([m, k, n]: Shape): () => void {
  const a = random(m * k, 1);
  const b = random(k * n, 2);
  const c = new Float32Array(m * n);
  // prettier-ignore
  const run = (): void => {
    for (let i = 0; i + 4 <= m; i += 4)
      for (let j = 0; j + 4 <= n; j += 4) {
        let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        const a0 = i * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
        for (let p = 0, q = j; p < k; p++, q += n) {
          const x0 = a[a0 + p], x1 = a[a1 + p], x2 = a[a2 + p], x3 = a[a3 + p];
          const y0 = b[q], y1 = b[q + 1], y2 = b[q + 2], y3 = b[q + 3];
          c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
          c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
          c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
          c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
        }
        let o = i * n + j;
        c[o] = c00; c[o + 1] = c01; c[o + 2] = c02; c[o + 3] = c03; o += n;
        c[o] = c10; c[o + 1] = c11; c[o + 2] = c12; c[o + 3] = c13; o += n;
        c[o] = c20; c[o + 1] = c21; c[o + 2] = c22; c[o + 3] = c23; o += n;
        c[o] = c30; c[o + 1] = c31; c[o + 2] = c32; c[o + 3] = c33;
      }
  };
  return run;
}

function main(): void {
  const schedules = (arg("--schedules") ?? DEFAULT_SCHEDULES.join(","))
    .split(",")
    .map(parseSchedule);
  const budgetMs = Number(arg("--budget-ms") ?? 4000);
  const epilogue = parseExpr(arg("--epilogue") ?? "acc");
  if (typeof epilogue === "string") throw new Error(epilogue);
  // columns: one per shape, each measured as one race of every contestant
  const columns = SHAPES.map(([m, k, n]) => {
    const shape: Shape = [m, k, n];
    const runs = schedules.map((sc) => generated(sc, shape, epilogue));
    const rates = race(m >= 4 ? [handWritten(shape), ...runs] : runs, 2 * m * k * n, budgetMs);
    return m >= 4 ? rates : [undefined, ...rates];
  });
  const head = SHAPES.map(([m, k, n]) => `${m}×${k}×${n}`);
  console.log(
    `generated TS matmul, 1 thread, GFLOP/s per CPU-second: median / best of interleaved ` +
      `calls; epilogue ${arg("--epilogue") ?? "acc"}`,
  );
  console.log(`| schedule | ${head.join(" | ")} |`);
  console.log(`|---|${head.map(() => "---:").join("|")}|`);
  const cell = (r: Rate | undefined) => (r ? `${r.median.toFixed(2)} / ${r.best.toFixed(2)}` : "–");
  const labels = [
    "hand-written 4×4, unpacked b",
    ...schedules.map(
      (sc) => `${label(sc)}${label(sc) === label(DEFAULT_SCHEDULE) ? " (default)" : ""}`,
    ),
  ];
  labels.forEach((l, n) => console.log(`| ${l} | ${columns.map((c) => cell(c[n])).join(" | ")} |`));
}

main();
