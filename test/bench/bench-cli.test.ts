/** `kiln bench` end to end on a tiny model: the JSON report's shape, and the usage errors. No
 *  assertion here looks at how long anything took. */
import { describe, expect, it } from "vitest";
import { FIGURES } from "../../bench/figures.ts";
import { formatReport } from "../../bench/report.ts";
import type { BenchReport } from "../../bench/run.ts";
import { expectTypedError, kiln } from "../helpers/cli.ts";

const TINY = [
  "--config",
  "n_embd=16",
  "--config",
  "n_head=2",
  "--config",
  "vocab_size=50",
  "--config",
  "n_positions=256",
];

const isCount = (x: unknown) => typeof x === "number" && Number.isFinite(x) && x > 0;

describe("kiln bench --quick --json on a tiny model", () => {
  it("prints one report: every figure with kiln, peer, ratio, or a reason for a gap", async () => {
    const r = await kiln("bench", "--quick", "--json", "--layers", "1", ...TINY);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as BenchReport;

    expect(report.model).toMatchObject({
      n_layer: 1,
      n_embd: 16,
      n_head: 2,
      vocab_size: 50,
      seed: 0,
    });
    expect(isCount(report.model.params)).toBe(true);
    expect(report.backends.kiln?.name).toBe("ts");
    expect(report.backends.peer?.name).toBe("tfjs");
    expect(report.settings.measure.maxReps).toBe(1);

    expect(Object.keys(report.figures)).toEqual(FIGURES.map((f) => f.id));
    for (const f of FIGURES) {
      const fig = report.figures[f.id];
      expect(fig.unit).toBe(f.unit);
      for (const side of ["kiln", "peer"] as const) {
        const v = fig[side];
        if (v === null) expect(typeof fig.skipped[side]).toBe("string");
        else {
          expect(isCount(v)).toBe(true);
          expect(fig.timing[side]).toMatchObject({ reps: 1, warmup: 0 });
        }
      }
      if (fig.kiln !== null && fig.peer !== null) expect(isCount(fig.ratio)).toBe(true);
      else expect(fig.ratio).toBeNull();
      // matmul figures carry the plain-JS yardstick timed in each side's process, and only they
      if (f.work.kind === "matmul") {
        expect(isCount(fig.yardstick?.kiln)).toBe(true);
        expect(isCount(fig.yardstick?.peer)).toBe(true);
      } else expect(fig.yardstick).toBeUndefined();
    }
    // kiln's generated kernels and the peer both run every figure.
    for (const f of FIGURES) expect(report.figures[f.id].kiln).not.toBeNull();
    for (const f of FIGURES) expect(report.figures[f.id].peer).not.toBeNull();

    expect(isCount(report.rss_mb.kiln)).toBe(true);
    expect(isCount(report.rss_mb.peer)).toBe(true);
    expect(isCount(report.rss_mb.ratio)).toBe(true);
    // Both backends computed the same model from the same checkpoint.
    expect(report.agreement?.max_rel_diff).toBeLessThan(1e-4);
    expect(report.agreement?.same_argmax).toBe(true);

    const table = formatReport(report);
    for (const f of FIGURES) expect(table).toContain(f.label);
    expect(table).toMatch(/matmul kernel vs plain-JS 4×4/);
    expect(table).toMatch(/matmul 64×768×768: ts [\d.]+ vs [\d.]+ = [\d.]+×; tfjs /);
  }, 180_000);

  it("--backends ref: the reference path skips the KV-cache figure, with the reason", async () => {
    const r = await kiln(
      "bench",
      "--quick",
      "--json",
      "--backends",
      "ref",
      "--layers",
      "1",
      ...TINY,
    );
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as BenchReport;
    expect(report.backends.kiln?.name).toBe("ref");
    expect(report.backends.peer).toBeFalsy();
    expect(report.figures.decode_kv_ms_per_token.skipped.kiln).toMatch(/KV cache/);
    expect(formatReport(report)).toMatch(/\[1\] ref: .*KV cache/);
  }, 180_000);
});

describe("kiln bench usage errors", () => {
  it("--help lists the flags", async () => {
    const r = await kiln("bench", "--help");
    expect(r.code).toBe(0);
    for (const flag of ["--layers", "--json", "--quick", "--backends", "--config"])
      expect(r.stdout).toContain(flag);
  });

  it.each([
    [["--backends", "nope"], "--backends", /unknown backend "nope" \(ref, ts, tfjs\)/],
    [["--backends", "ref,ref"], "--backends", /both kiln backends/],
    [["--backends", "ref,ts"], "--backends", /both kiln backends/],
    [["--backends", ""], "--backends", /unknown backend ""/],
    [["--layers", "0"], "--layers", /positive integer/],
    [["--layers", "two"], "--layers", /expected an integer/],
    [["--layers", "2", "--config", "n_layer=3"], "--layers", /once/],
    [["--config", "n_positions=100"], "--config n_positions", /at least 256/],
    [["--config", "colour=red"], "kiln bench", /key one of/],
    [["extra"], "kiln bench", /no positional/],
  ])("%j", async (args, where, why) => {
    expectTypedError(await kiln("bench", ...args), "usage", where, why);
  });

  it("a model the DSL refuses is a dsl error before anything runs", async () => {
    expectTypedError(await kiln("bench", "--config", "n_head=5"), "dsl", /divisible by n_head/);
  });
});
