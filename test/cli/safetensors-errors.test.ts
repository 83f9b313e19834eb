/** Every malformed model.safetensors through `kiln forward`: a typed error on stderr naming the
 *  file (and the tensor, where there is one), a non-zero exit, no stack trace. The reader's own
 *  tests (test/runtime/safetensors.test.ts) cover the same cases and more at the unit level. */
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, expect, it } from "vitest";
import { writeRandomCheckpoint } from "../../scripts/random-checkpoint.ts";
import { expectTypedError, kiln, tempDir } from "../helpers/cli.ts";

let good: string;

beforeAll(() => {
  good = tempDir();
  writeRandomCheckpoint(good, {
    kind: "gpt2",
    config: {
      vocab_size: 11,
      n_positions: 4,
      n_embd: 4,
      n_layer: 1,
      n_head: 2,
      layer_norm_epsilon: 1e-5,
    },
  });
});

/** A file: u64 header length, the header text, then `data` bytes. */
function file(header: string, data = 0, headerLength?: bigint): Uint8Array {
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + h.length + data);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(h.length), true);
  out.set(h, 8);
  return out;
}

const t = (name: string, dtype: string, shape: unknown, offsets: unknown) =>
  `"${name}":{"dtype":"${dtype}","shape":${JSON.stringify(shape)},"data_offsets":${JSON.stringify(offsets)}}`;

const CASES: [string, Uint8Array, string][] = [
  ["truncated before the header length", new Uint8Array(5), "too short"],
  ["header length huge", file("{}", 0, 1n << 62n), "header"],
  ["header length past the end of the file", file("{}", 0, 4096n), "header"],
  ["header not JSON", file("{nope"), "JSON"],
  [
    "duplicate key",
    file(`{${t("a", "F32", [1], [0, 4])},${t("a", "F32", [1], [4, 8])}}`, 8),
    '"a"',
  ],
  [
    "offsets overlapping",
    file(`{${t("a", "F32", [2], [0, 8])},${t("b", "F32", [2], [4, 12])}}`, 12),
    '"b"',
  ],
  [
    "offsets with a gap",
    file(`{${t("a", "F32", [1], [0, 4])},${t("b", "F32", [1], [8, 12])}}`, 12),
    '"b"',
  ],
  ["offsets past the end of the file", file(`{${t("a", "F32", [4], [0, 16])}}`, 8), '"a"'],
  ["byte length ≠ shape × dtype", file(`{${t("a", "F32", [3], [0, 8])}}`, 8), '"a"'],
  ["element count overflows", file(`{${t("a", "F32", [2 ** 40, 2 ** 40], [0, 4])}}`, 4), '"a"'],
  ["unknown dtype", file(`{${t("a", "F33", [1], [0, 4])}}`, 4), "F33"],
  ["trailing bytes", file(`{${t("a", "F32", [1], [0, 4])}}`, 9), "trailing"],
];

it.each(CASES)("%s", async (_name, bytes, fragment) => {
  const dir = tempDir();
  copyFileSync(join(good, "config.json"), join(dir, "config.json"));
  writeFileSync(join(dir, "model.safetensors"), bytes);
  const r = await kiln("forward", dir, "--tokens", "1");
  expectTypedError(r, "safetensors", join(dir, "model.safetensors"), fragment);
  expect(r.code).toBe(1);
});
