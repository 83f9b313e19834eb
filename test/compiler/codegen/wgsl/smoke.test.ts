/** The WGSL path end to end on the smallest program: a map kernel, lowered, emitted, compiled on
 *  the test device with no compilation messages, run, and compared with the interpreter. */
import { describe, expect, it } from "vitest";
import { ndarray } from "../../../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../../../compiler/ir/parse.ts";
import { testGpu } from "../../../helpers/gpu.ts";
import { relError, wgslPair } from "./harness.ts";

const gpu = await testGpu();

describe.skipIf(!gpu)("wgsl smoke", () => {
  it("runs a broadcasting map kernel", async () => {
    const g = parseGraph(`graph @t(%x: f32[T,5], %y: f32[5]) -> (f32[T,5]) {
  %m = map(%x, %y) {expr="gelu(add(mul($0, $1), tanh($0)))"} : f32[T,5]
  return %m
}`);
    const p = await wgslPair(gpu!, g, () => undefined, { maxDims: new Map([["T", 8]]) });
    expect(p.model.messages).toEqual([]);
    const x = ndarray(
      [3, 5],
      Float32Array.from({ length: 15 }, (_, i) => Math.sin(i) * 2),
    );
    const y = ndarray([5], Float32Array.from([0.5, -1, 2, 0, 1.5]));
    const { got, want } = await p.run(
      new Map([
        ["x", x],
        ["y", y],
      ]),
    );
    expect(relError(got[0], want[0])).toBeLessThanOrEqual(1e-5);
  });
});
