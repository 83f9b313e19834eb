/** Bad input through the CLI: every case a typed error on stderr naming the file, tensor or flag
 *  and the cause, a non-zero exit, no stack trace. */
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  randomTensors,
  writeRandomCheckpoint,
  type RandomModel,
} from "../../scripts/random-checkpoint.ts";
import { writeSafetensors } from "../../runtime/safetensors-write.ts";
import { expectTypedError, kiln, kilnProcess, tempDir } from "../helpers/cli.ts";

const GPT2: RandomModel = {
  kind: "gpt2",
  config: {
    vocab_size: 29,
    n_positions: 8,
    n_embd: 12,
    n_layer: 1,
    n_head: 3,
    layer_norm_epsilon: 1e-5,
  },
};
const S2S: RandomModel = {
  kind: "seq2seq",
  config: {
    num_encoder_layers: 1,
    num_decoder_layers: 1,
    emb_size: 8,
    nhead: 2,
    src_vocab_size: 11,
    tgt_vocab_size: 13,
    dim_feedforward: 16,
    max_len: 5000,
  },
};

let good: string;
let s2s: string;

/** A copy of the good GPT-2 checkpoint with its config.json or tensors changed. */
function variant(opts: {
  config?: (c: Record<string, unknown>) => unknown;
  tensors?: (t: ReturnType<typeof randomTensors>) => ReturnType<typeof randomTensors>;
  raw?: string;
}): string {
  const dir = tempDir();
  const config = JSON.parse(readFileSync(join(good, "config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  writeFileSync(
    join(dir, "config.json"),
    opts.raw ?? JSON.stringify(opts.config ? opts.config(config) : config),
  );
  if (opts.tensors)
    writeFileSync(
      join(dir, "model.safetensors"),
      writeSafetensors(opts.tensors(randomTensors(GPT2))),
    );
  else copyFileSync(join(good, "model.safetensors"), join(dir, "model.safetensors"));
  return dir;
}

beforeAll(() => {
  good = tempDir();
  writeRandomCheckpoint(good, GPT2);
  s2s = tempDir();
  writeRandomCheckpoint(s2s, S2S);
});

describe("checkpoint folder", () => {
  it("runs the good checkpoints", async () => {
    const r = await kiln("forward", good, "--tokens", "1,2,3", "--json");
    expect(r.code).toBe(0);
    const { logits } = JSON.parse(r.stdout) as { logits: number[][] };
    expect(logits.length).toBe(3);
    expect(logits[0].length).toBe(29);
    const s = await kiln("forward", s2s, "--tokens", "1,2", "--src-tokens", "3,4,5", "--json");
    expect(s.code).toBe(0);
    expect((JSON.parse(s.stdout) as { logits: number[][] }).logits.map((r) => r.length)).toEqual([
      13, 13,
    ]);
  });

  it("config.json missing", async () => {
    const dir = tempDir();
    expectTypedError(
      await kiln("forward", dir, "--tokens", "1"),
      "checkpoint",
      join(dir, "config.json"),
      "missing",
    );
  });

  it("config.json not JSON", async () => {
    expectTypedError(
      await kiln("forward", variant({ raw: "{ nope" }), "--tokens", "1"),
      "checkpoint",
      "config.json",
      "not valid JSON",
    );
  });

  it("config.json with a wrong type", async () => {
    const dir = variant({ config: (c) => ({ ...c, n_embd: "12" }) });
    expectTypedError(
      await kiln("forward", dir, "--tokens", "1"),
      "checkpoint",
      "config.json",
      '"n_embd" must be a positive integer, got "12"',
    );
  });

  it("config.json of an unknown model", async () => {
    const dir = variant({ config: (c) => ({ ...c, model_type: "llama" }) });
    expectTypedError(
      await kiln("forward", dir, "--tokens", "1"),
      "checkpoint",
      '"model_type" "llama" is not supported',
    );
  });

  it("n_embd not divisible by n_head", async () => {
    const dir = variant({ config: (c) => ({ ...c, n_head: 5 }) });
    expectTypedError(
      await kiln("forward", dir, "--tokens", "1"),
      "checkpoint",
      '"n_embd" (12) must be divisible by "n_head" (5)',
    );
  });

  it("model.safetensors missing", async () => {
    const dir = tempDir();
    copyFileSync(join(good, "config.json"), join(dir, "config.json"));
    expectTypedError(
      await kiln("forward", dir, "--tokens", "1"),
      "safetensors",
      "model.safetensors",
    );
  });

  it("model.safetensors truncated", async () => {
    const dir = variant({});
    const bytes = readFileSync(join(dir, "model.safetensors"));
    writeFileSync(join(dir, "model.safetensors"), bytes.subarray(0, bytes.length - 10));
    expectTypedError(
      await kiln("forward", dir, "--tokens", "1"),
      "safetensors",
      "model.safetensors",
    );
  });

  it("tensor missing", async () => {
    const dir = variant({ tensors: (ts) => ts.filter((t) => t.name !== "h.0.ln_2.bias") });
    expectTypedError(
      await kiln("forward", dir, "--tokens", "1"),
      "checkpoint",
      'tensor "h.0.ln_2.bias": missing',
      "f32[12]",
    );
  });

  it("tensor unexpected", async () => {
    const dir = variant({
      tensors: (ts) => [...ts, { name: "h.0.extra", dtype: "F32", shape: [2], data: [1, 2] }],
    });
    expectTypedError(
      await kiln("forward", dir, "--tokens", "1"),
      "checkpoint",
      'tensor "h.0.extra": unexpected',
    );
  });

  it("__proto__ as a tensor name", async () => {
    const dir = variant({
      tensors: (ts) => [...ts, { name: "__proto__", dtype: "F32", shape: [1], data: [1] }],
    });
    expectTypedError(
      await kiln("forward", dir, "--tokens", "1"),
      "checkpoint",
      'tensor "__proto__": unexpected',
    );
  });

  it("tensor with the wrong shape names both shapes", async () => {
    const dir = variant({
      tensors: (ts) => ts.map((t) => (t.name === "wpe.weight" ? { ...t, shape: [12, 8] } : t)),
    });
    expectTypedError(
      await kiln("forward", dir, "--tokens", "1"),
      "checkpoint",
      'tensor "wpe.weight": shape [12,8] in the file, the model needs [8,12]',
    );
  });

  it("accepts GPT-2's attention buffers, a transformer. prefix and a tied lm_head", async () => {
    const dir = variant({
      tensors: (ts) => [
        ...ts.map((t) => ({ ...t, name: `transformer.${t.name}` })),
        {
          name: "transformer.h.0.attn.bias",
          dtype: "F32",
          shape: [1, 1, 8, 8],
          data: new Array(64).fill(1),
        },
        { name: "transformer.h.0.attn.masked_bias", dtype: "F32", shape: [], data: [-1e4] },
        { ...ts.find((t) => t.name === "wte.weight")!, name: "lm_head.weight" },
      ],
    });
    const a = await kiln("forward", dir, "--tokens", "1,2", "--json");
    const b = await kiln("forward", good, "--tokens", "1,2", "--json");
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
  });
});

describe("run-time input", () => {
  it("token id ≥ vocab", async () => {
    expectTypedError(
      await kiln("forward", good, "--tokens", "1,29"),
      "input",
      "--tokens",
      "token id 29 at position 1 is outside the vocabulary [0, 29)",
    );
  });

  it("negative token id", async () => {
    expectTypedError(await kiln("forward", good, "--tokens=-1"), "input", "token id -1");
  });

  it("source token id ≥ source vocab", async () => {
    expectTypedError(
      await kiln("forward", s2s, "--tokens", "1", "--src-tokens", "11"),
      "input",
      "--src-tokens",
      "[0, 11)",
    );
  });

  it("sequence longer than the context", async () => {
    expectTypedError(
      await kiln("forward", good, "--tokens", "1,2,3,4,5,6,7,8,9"),
      "input",
      "length 9 exceeds the context length n_positions",
    );
  });

  it("generation past the context", async () => {
    expectTypedError(
      await kiln("generate", good, "--tokens", "1,2,3", "--max-new-tokens", "6"),
      "input",
      "exceed the model's context of 8",
    );
  });

  it("an encoder–decoder without --src-tokens", async () => {
    expectTypedError(await kiln("forward", s2s, "--tokens", "1"), "input", "--src-tokens");
  });
});

describe("usage", () => {
  it("unknown command, flag, target; missing --tokens; bad numbers", async () => {
    expectTypedError(await kiln("frobnicate"), "usage", "unknown command");
    expectTypedError(await kiln("forward", good, "--tokens", "1", "--bogus"), "usage", "--bogus");
    expectTypedError(
      await kiln("forward", good, "--tokens", "1", "--target", "cuda"),
      "usage",
      "unknown target",
    );
    expectTypedError(await kiln("forward", good), "usage", "--tokens is required");
    expectTypedError(
      await kiln("forward", good, "--tokens", "1,x"),
      "usage",
      "comma-separated integers",
    );
    expectTypedError(
      await kiln("generate", good, "--tokens", "1", "--max-new-tokens", "two"),
      "usage",
      "--max-new-tokens",
    );
    expectTypedError(
      await kiln("generate", good, "--tokens", "1", "--max-new-tokens", "2", "--temperature", "-1"),
      "usage",
      "--temperature",
    );
  });

  it("an unknown WebGPU backend in KILN_WEBGPU_BACKEND is a usage error", () => {
    const before = process.env.KILN_WEBGPU_BACKEND;
    process.env.KILN_WEBGPU_BACKEND = "metal";
    try {
      const r = kilnProcess("forward", good, "--tokens", "1", "--target", "wgsl");
      expectTypedError(r, "usage", "KILN_WEBGPU_BACKEND", "vulkan, opengl", '"metal"');
    } finally {
      if (before === undefined) delete process.env.KILN_WEBGPU_BACKEND;
      else process.env.KILN_WEBGPU_BACKEND = before;
    }
  });

  it("every command has --help", async () => {
    for (const c of ["inspect", "forward", "generate"]) {
      const r = await kiln(c, "--help");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`kiln ${c}`);
    }
  });
});

describe("the kiln process", () => {
  it("prints a typed error and exits non-zero, without a stack trace", () => {
    const r = kilnProcess("forward", good, "--tokens", "99");
    expect(r.code).toBe(1);
    expectTypedError(r, "input", "token id 99");
  });

  it("a DSL error names the model file and line", () => {
    const r = kilnProcess("inspect", "models/gpt2.ts", "--config", "n_head=5");
    expectTypedError(
      r,
      "dsl",
      /models\/gpt2\.ts:\d+: gpt2: n_embd \(768\) must be divisible by n_head \(5\)/,
    );
  });

  it("samples reproducibly with a seed", () => {
    const args = [
      "generate",
      good,
      "--tokens",
      "1",
      "--max-new-tokens",
      "5",
      "--temperature",
      "1.5",
      "--top-k",
      "10",
      "--seed",
      "7",
      "--json",
    ];
    const a = kilnProcess(...args);
    expect(a.code).toBe(0);
    expect(kilnProcess(...args).stdout).toBe(a.stdout);
    expect((JSON.parse(a.stdout) as { tokens: number[] }).tokens).toHaveLength(5);
  });
});
