/** `kiln inspect`: the optimizer's report as text and JSON, and the pass flags. */
import { describe, expect, it } from "vitest";
import { expectTypedError, kiln } from "../helpers/cli.ts";

const SMALL = [
  "--config",
  "n_layer=1",
  "--config",
  "n_embd=24",
  "--config",
  "n_head=3",
  "--config",
  "vocab_size=97",
  "--config",
  "n_positions=16",
];

interface Report {
  passes: { name: string; nodes: number; rewrites: number }[];
  kernels: { name: string; family: string; phase: string; covers: string[] }[];
  memory: { seqLen: number; peakBytes: number; unplannedBytes: number };
  notFused: { pattern: string; at: string; reason: string }[];
}

describe("kiln inspect", () => {
  it("--format json reports passes, kernels, memory and refused fusions", async () => {
    const r = await kiln("inspect", "gpt2", ...SMALL, "--format", "json", "--seq-len", "8");
    expect(r.stderr).toBe("");
    const j = JSON.parse(r.stdout) as Report;
    expect(j.passes.map((p) => p.name)).toContain("fuse-attention");
    expect(j.passes.find((p) => p.name === "fuse-attention")!.rewrites).toBe(1);
    expect(j.kernels.map((k) => k.family)).toContain("attention");
    for (const k of j.kernels) expect(k.covers.length).toBeGreaterThan(0);
    expect(j.memory.seqLen).toBe(8);
    expect(j.memory.peakBytes).toBeGreaterThan(0);
    expect(j.memory.peakBytes).toBeLessThanOrEqual(j.memory.unplannedBytes);
    expect(j.notFused.length).toBeGreaterThan(0);
    for (const n of j.notFused) expect(n.reason.length).toBeGreaterThan(0);
  });

  it("--no-opt lowers the graph as written: many more kernels", async () => {
    const opt = JSON.parse(
      (await kiln("inspect", "gpt2", ...SMALL, "--format", "json")).stdout,
    ) as Report;
    const raw = JSON.parse(
      (await kiln("inspect", "gpt2", ...SMALL, "--format", "json", "--no-opt")).stdout,
    ) as Report;
    expect(raw.passes).toEqual([]);
    expect(raw.kernels.length).toBeGreaterThan(1.5 * opt.kernels.length);
  });

  it("text shows the IR, the kernel list and the memory line", async () => {
    const r = await kiln("inspect", "gpt2", ...SMALL);
    expect(r.stdout).toMatch(/= attention\(%q, %k, %v\) \{heads=3/);
    expect(r.stdout).toMatch(/\/\/ \d+ kernels \(load \d+, source \d+, step \d+\); kv cache on/);
    expect(r.stdout).toMatch(/\/\/ memory at seq len 16: planned peak/);
  });

  it("--print-after-all prints the IR after every pass; --print-after one", async () => {
    const all = await kiln("inspect", "gpt2", ...SMALL, "--print-after-all");
    expect(all.stdout.match(/^\/\/ after [a-z-]+: \d+ nodes$/gm)!.length).toBeGreaterThanOrEqual(
      10,
    );
    const one = await kiln("inspect", "gpt2", ...SMALL, "--print-after", "fuse-qkv");
    expect(one.stdout.match(/^\/\/ after /gm)).toHaveLength(1);
    const picked = await kiln("inspect", "gpt2", ...SMALL, "--passes", "fuse-scale-softmax,dce");
    expect(picked.stdout).toContain("scale_softmax(");
    expect(picked.stdout).not.toContain("attention(");
  });

  it("bad flags are usage errors", async () => {
    expectTypedError(await kiln("inspect", "gpt2", "--passes", "nope"), "usage", "unknown pass");
    expectTypedError(
      await kiln("inspect", "gpt2", "--no-opt", "--passes", "dce"),
      "usage",
      "either --passes or --no-opt",
    );
    expectTypedError(
      await kiln("inspect", "gpt2", "--print-after", "nope"),
      "usage",
      "unknown pass",
    );
    expectTypedError(await kiln("inspect", "gpt2", "--format", "yaml"), "usage", "--format");
    expectTypedError(await kiln("inspect", "gpt2", "--seq-len", "0"), "usage", "--seq-len");
  });

  it("forward --print-after writes IR to stderr and keeps stdout JSON", async () => {
    const r = await kiln(
      "forward",
      "test/fixtures/gpt2-tiny",
      "--tokens",
      "1,2",
      "--json",
      "--print-after",
      "fuse-attention",
    );
    expect(r.stderr).toMatch(/^\/\/ after fuse-attention/);
    expect(JSON.parse(r.stdout)).toHaveProperty("logits");
  });
});
