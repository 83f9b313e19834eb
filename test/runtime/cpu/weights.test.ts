/** The weight lender (runtime/cpu/weights.ts) and the ts runner's memory: the first load is handed
 *  each array once and the lender lets go of it; a later load gets the arrays the first one kept,
 *  the rest read again from the file (refused when the file changed); a checkpoint that was not
 *  read from a file lends everything to every load. Whether an array is still alive is counted
 *  with v8.queryObjects, which collects garbage first (no timing involved): each test hands out
 *  arrays of a class of its own and holds none of them. */
import { copyFileSync, mkdtempSync, rmSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { queryObjects } from "node:v8";
import { afterAll, describe, expect, it } from "vitest";
import { KilnError } from "../../../compiler/errors.ts";
import { loadCheckpoint, type Checkpoint } from "../../../runtime/checkpoint.ts";
import type { WeightSource } from "../../../runtime/cpu/module.ts";
import { weightLender } from "../../../runtime/cpu/weights.ts";
import { makeRunner, type Runner } from "../../../runtime/runner.ts";

const FIXTURE = join(import.meta.dirname, "..", "..", "fixtures", "gpt2-tiny");
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A copy of the fixture, so a test may touch its file. */
function fixtureCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), "kiln-lender-"));
  dirs.push(dir);
  for (const f of ["config.json", "model.safetensors"])
    copyFileSync(join(FIXTURE, f), join(dir, f));
  return dir;
}

/** The checkpoint with its arrays copied into `Tracked`, so queryObjects can count them. */
function tracked(ckpt: Checkpoint, Tracked: typeof Float32Array, stamp = true): Checkpoint {
  const weights = new Map(
    Array.from(ckpt.weights, ([n, w]) => [n, { shape: w.shape, data: Tracked.from(w.data) }]),
  );
  const { stamp: _s, ...rest } = ckpt;
  return { ...rest, weights, ...(stamp && ckpt.stamp ? { stamp: ckpt.stamp } : {}) };
}

const live = (c: typeof Float32Array) => queryObjects(c, { format: "count" });

/** A lender over the fixture (or `dir`), holding nothing else: the test keeps no checkpoint. */
function lenderOf(Tracked: typeof Float32Array, dir = FIXTURE, stamp = true) {
  const ckpt = loadCheckpoint(dir);
  const names = [...ckpt.weights.keys()];
  return { lend: weightLender(tracked(ckpt, Tracked, stamp)), names };
}

/** A load that takes every param and keeps those `keep` picks, as the generated one does. */
const loadKeeping =
  (names: readonly string[], keep: (name: string) => boolean) =>
  (w: WeightSource): Record<string, ArrayLike<number> | undefined> =>
    Object.fromEntries(names.map((n) => [n, w(n)]).filter(([n]) => keep(n as string)));

describe("weightLender", () => {
  it("hands each array once to the first load and lets go of the ones it did not keep", () => {
    class A extends Float32Array {}
    const { lend, names } = lenderOf(A);
    expect(live(A)).toBe(names.length);
    const isBias = (n: string) => n.endsWith(".bias");
    let again: ArrayLike<number> | undefined = new Float32Array(1);
    const kept = lend((w) => {
      const result = loadKeeping(names, isBias)(w);
      again = w(names[0]);
      return result;
    });
    expect(again).toBeUndefined();
    expect(Object.keys(kept).length).toBeGreaterThan(0);
    expect(live(A)).toBe(names.filter(isBias).length);
  });

  it("gives a later load the first one's kept arrays and reads the others again", () => {
    class B extends Float32Array {}
    const { lend, names } = lenderOf(B);
    const isBias = (n: string) => n.endsWith(".bias");
    const first = lend(loadKeeping(names, isBias)) as Record<string, Float32Array>;
    const second = lend(loadKeeping(names, () => true)) as Record<string, Float32Array>;
    const want = loadCheckpoint(FIXTURE).weights;
    for (const n of names) {
      expect(Array.from(second[n])).toEqual(Array.from(want.get(n)!.data));
      if (isBias(n)) expect(second[n]).toBe(first[n]);
      else expect(second[n]).not.toBeInstanceOf(B); // read again, not kept
    }
  });

  it("refuses to read again from a file that changed since the checkpoint was loaded", () => {
    class C extends Float32Array {}
    const dir = fixtureCopy();
    const { lend, names } = lenderOf(C, dir);
    lend(loadKeeping(names, () => false));
    utimesSync(join(dir, "model.safetensors"), new Date(), new Date(2000, 0, 1));
    let caught: unknown;
    try {
      lend(loadKeeping(names, () => true));
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(KilnError);
    expect((caught as KilnError).kind).toBe("checkpoint");
    expect((caught as KilnError).message).toMatch(/changed or gone since it was loaded/);
  });

  it("lends every array to every load when the checkpoint cannot be read again", () => {
    class D extends Float32Array {}
    const { lend, names } = lenderOf(D, FIXTURE, false);
    const first = lend(loadKeeping(names, () => false));
    expect(Object.keys(first)).toEqual([]);
    expect(live(D)).toBe(names.length);
    const second = lend(loadKeeping(names, () => true)) as Record<string, Float32Array>;
    for (const n of names) expect(second[n]).toBeInstanceOf(D);
  });
});

describe("the ts runner", () => {
  /** The runner on the fixture's weights (as `E`), the checkpoint dropped once it is made. */
  async function runnerOf(
    E: typeof Float32Array,
    threads = 1,
  ): Promise<{ runner: Runner; n: number }> {
    const ckpt = tracked(loadCheckpoint(FIXTURE), E);
    return { runner: await makeRunner(ckpt, "ts", { threads }), n: ckpt.weights.size };
  }

  it("holds the checkpoint's arrays until it loads, then only those its sessions read", async () => {
    class E extends Float32Array {}
    const { runner, n } = await runnerOf(E);
    expect(live(E)).toBe(n);
    const logits = await runner.forward([1, 5, 2]);
    expect(logits.rows).toBe(3);
    // GPT-2 has four packed matmul weights per layer; the tiny fixture has two layers.
    expect(live(E)).toBe(n - 8);
  });

  it("with threads, also lets go of the biases it copied into shared memory", async () => {
    class G extends Float32Array {}
    const { runner, n } = await runnerOf(G, 2);
    await runner.forward([1, 5, 2]);
    // the four matmuls of each of the two layers have a bias, which the threads read
    expect(live(G)).toBe(n - 8 - 8);
  });

  it("decodes after a forward with the same weights (the decoding module reads some again)", async () => {
    class F extends Float32Array {}
    const { runner } = await runnerOf(F);
    const full = await runner.forward([1, 5, 2, 7]);
    const d = await runner.prefill!([1, 5, 2, 7]);
    const last = full.data.subarray(3 * full.cols);
    expect(Array.from(d.logits.data)).toEqual(Array.from(last));
  });
});
