/** The bench's timing helpers and the plain-JS yardstick: what they call and in what order, never
 *  how long anything took. */
import { describe, expect, it } from "vitest";
import { measureAlternately } from "../../bench/harness.ts";
import { plainJs4x4 } from "../../bench/yardstick.ts";

describe("measureAlternately", () => {
  it("times one run of each per round, in order, after a discarded first round", async () => {
    const calls: string[] = [];
    const timings = await measureAlternately(
      [() => void calls.push("a"), () => void calls.push("b")],
      { budgetMs: 60_000, maxReps: 3 },
    );
    expect(calls.join("")).toBe("abababab"); // the warm-up round, then three timed rounds
    for (const t of timings) {
      expect(t).toMatchObject({ reps: 3, warmup: 1 });
      expect(t.min_ms).toBeLessThanOrEqual(t.median_ms);
    }
  });

  it("one run of each when only one is allowed (--quick), and that run is the sample", async () => {
    let n = 0;
    const timings = await measureAlternately([() => void n++, () => void n++], {
      budgetMs: 0,
      maxReps: 1,
    });
    expect(n).toBe(2);
    expect(timings).toHaveLength(2);
    for (const t of timings) expect(t).toMatchObject({ reps: 1, warmup: 0 });
  });

  it("stops once the budget is spent on all of them together", async () => {
    let n = 0;
    const busy = () => {
      n++;
      const until = performance.now() + 5;
      while (performance.now() < until);
    };
    const [t] = await measureAlternately([busy], { budgetMs: 12, maxReps: 1000 });
    // rounds of ≥ 5 ms each: the third crosses 12 ms (a slow machine can only make it fewer)
    expect(t.reps).toBeLessThanOrEqual(3);
    expect(n).toBe(t.reps + 1);
  });
});

describe("plainJs4x4 (the matmul yardstick)", () => {
  it("computes a·b on the whole 4×4 blocks and leaves the rest zero", () => {
    const [m, k, n] = [10, 7, 9];
    const y = plainJs4x4(m, k, n);
    y.run();
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let ref = 0;
        for (let p = 0; p < k; p++) ref += y.a[i * k + p] * y.b[p * n + j];
        const inBlocks = i < 8 && j < 8;
        expect(y.c[i * n + j]).toBeCloseTo(inBlocks ? ref : 0, 5);
      }
    expect(y.flops).toBe(2 * 8 * 7 * 8);
  });
});
