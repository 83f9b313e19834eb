/** The bench's standalone tools run and print what they say, on the tiny fixtures (no assertion
 *  looks at a time's value). */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO } from "../helpers/cli.ts";

const tool = (script: string, ...args: string[]) =>
  spawnSync(process.execPath, ["--import", "tsx/esm", join(REPO, "bench", script), ...args], {
    encoding: "utf8",
    cwd: REPO,
  });

describe("bench/decode-steps.ts", () => {
  it("prints load, runner and prefill times, then one time per step", () => {
    const ckpt = join(REPO, "test", "fixtures", "gpt2-tiny");
    for (const threads of ["1", "2"]) {
      const r = tool(
        "decode-steps.ts",
        ckpt,
        "--prompt",
        "3",
        "--steps",
        "4",
        "--threads",
        threads,
      );
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^load \d+ ms, runner \d+ ms, prefill of 3 \d+ ms\n/);
      expect(r.stdout).toMatch(/\nsteps \(ms\): \d+ \d+ \d+ \d+\n$/);
    }
  }, 60_000);

  it.each([
    [
      ["test/fixtures/seq2seq-tiny"],
      /seq2seq-tiny: a GPT-2 checkpoint \(a decoder with a KV cache\)/,
    ],
    [["/nonexistent"], /\/nonexistent\/config\.json: missing/],
    [[], /usage: bench\/decode-steps\.ts CHECKPOINT/],
    [["test/fixtures/gpt2-tiny", "--steps", "0"], /--steps: 0 is not a whole number ≥ 1/],
    [["test/fixtures/gpt2-tiny", "--nope"], /Unknown option '--nope'/],
  ])(
    "refuses %j in one line, exit status 2",
    (args, message) => {
      const r = tool("decode-steps.ts", ...args);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    },
    60_000,
  );
});
