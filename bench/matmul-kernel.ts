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
 *  (bench/yardstick.ts, peers.md's "plain JS, 4×4 register blocking", 4.7 GFLOP/s on the AVX-512 3.5 GHz machine
 *  measured there). Read the generated kernels against it: on the 2-core AMD EPYC (Zen 3, no
 *  AVX-512) this was written on, the yardstick ran 2.4–3.0 and 3×3 with span 4 (the default)
 *  4.1–4.5 (best calls); 4×4 and 4×8 blocks 3.3–4.1: their accumulators spill.
 *
 *  Each schedule and shape gets its own instance (bench/kernel-instance.ts: transpiled and made with
 *  `new Function`, in the benchmarks only). */
import { parseExpr, type Expr } from "../compiler/ir/expr.ts";
import { DEFAULT_SCHEDULE, type Schedule, type MatmulSpec } from "../compiler/codegen/ts/matmul.ts";
import { instantiateMatmul } from "./kernel-instance.ts";
import { plainJs4x4, randomMatrix as random } from "./yardstick.ts";

const SHAPES: readonly (readonly [number, number, number])[] = [
  [64, 768, 768],
  [128, 768, 3072],
  [256, 768, 2304],
  [1, 768, 3072],
];

const DEFAULT_SCHEDULES = ["3x3s4", "3x3s2", "3x3s1", "4x4s2", "4x8s1", "2x6s2", "3x4s3", "2x4s2"];

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
  const { kernel, pack } = instantiateMatmul(spec);
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
    const rates = race(m >= 4 ? [plainJs4x4(m, k, n).run, ...runs] : runs, 2 * m * k * n, budgetMs);
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
