/** Views as offsets and strides (polynomials in the dims), and the reshapes they cannot express. */
import { describe, expect, it } from "vitest";
import type { View } from "../../../compiler/lower/program.ts";
import {
  evalSym,
  formatSym,
  symAdd,
  symDiv,
  symMul,
  symOfDim,
  symProduct,
} from "../../../compiler/lower/sym.ts";
import {
  broadcastView,
  concatView,
  isContiguous,
  reshapeView,
  sliceView,
  transposeView,
  wholeView,
} from "../../../compiler/lower/views.ts";

const show = (v: View | undefined) =>
  v && { shape: v.shape, offset: formatSym(v.offset), strides: v.strides.map(formatSym) };

describe("symbolic integers", () => {
  it("normalize sums and products of dims", () => {
    expect(formatSym(symProduct([3, "T", "T"]))).toBe("3*T*T");
    expect(formatSym(symAdd(symOfDim("P+T"), symOfDim("T+2")))).toBe("2 + P + 2*T");
    expect(formatSym(symMul(symOfDim("S+1"), symOfDim(4)))).toBe("4 + 4*S");
    expect(
      evalSym(
        symProduct(["P+T", 8]),
        new Map([
          ["P", 3],
          ["T", 2],
        ]),
      ),
    ).toBe(40);
    expect(formatSym(symDiv(symProduct([6, "T"]), symProduct([3]))!)).toBe("2*T");
    expect(symDiv(symProduct([3]), symProduct([2]))).toBeUndefined();
    expect(symDiv(symProduct(["S"]), symProduct(["T"]))).toBeUndefined();
  });
});

describe("views", () => {
  const qkv = wholeView(0, ["T", 72]);

  it("slice the k third of a merged projection in place", () => {
    expect(show(sliceView(qkv, 1, 24, 24))).toEqual({
      shape: ["T", 24],
      offset: "24",
      strides: ["72", "1"],
    });
  });

  it("slice the last position (a negative start) at an offset that depends on T", () => {
    expect(show(sliceView(qkv, 0, -1, 1))).toEqual({
      shape: [1, 72],
      offset: "-72 + 72*T",
      strides: ["72", "1"],
    });
    expect(show(sliceView(sliceView(qkv, 1, 24, 24), 0, -2, 1))!.offset).toBe("-120 + 72*T");
  });

  it("split heads of a strided third: reshape then transpose", () => {
    const k = sliceView(qkv, 1, 24, 24);
    const heads = transposeView(reshapeView(k, ["T", 3, 8])!, [1, 0, 2]);
    expect(show(heads)).toEqual({ shape: [3, "T", 8], offset: "24", strides: ["8", "72", "1"] });
  });

  it("a contiguous buffer reshapes freely, with symbolic strides", () => {
    const x = wholeView(1, [3, "T", 8]);
    expect(show(x)!.strides).toEqual(["8*T", "8", "1"]);
    expect(show(reshapeView(x, [3, "T", 2, 4]))!.strides).toEqual(["8*T", "8", "4", "1"]);
    expect(isContiguous(x)).toBe(true);
  });

  it("merging heads after a transpose has no strides: the lowering copies", () => {
    const attn = wholeView(2, [3, "T", 8]);
    expect(reshapeView(transposeView(attn, [1, 0, 2]), ["T", 24])).toBeUndefined();
  });

  it("re-splits a run of axes whose strides chain, ignoring size-1 axes", () => {
    const t = transposeView(wholeView(3, [4, 6, 5]), [1, 0, 2]); // [6,4,5] strides [5,30,1]
    expect(show(reshapeView(t, [2, 3, 1, 20]))).toBeUndefined(); // 4 and 5 chain, 6 and 4 do not
    expect(show(reshapeView(t, [6, 1, 4, 5]))!.strides).toEqual(["5", "0", "30", "1"]);
    expect(show(reshapeView(t, [2, 3, 4, 5]))!.strides).toEqual(["15", "5", "30", "1"]);
  });

  it("concat of adjacent pieces of one buffer is a view; anything else is not", () => {
    const [a, b] = [sliceView(qkv, 1, 24, 24), sliceView(qkv, 1, 48, 24)];
    expect(show(concatView([a, b], 1, ["T", 48]))).toEqual({
      shape: ["T", 48],
      offset: "24",
      strides: ["72", "1"],
    });
    expect(concatView([b, a], 1, ["T", 48])).toBeUndefined();
    expect(concatView([a, wholeView(9, ["T", 24])], 1, ["T", 48])).toBeUndefined();
  });

  it("broadcast gives stride 0 on new and size-1 axes", () => {
    expect(show(broadcastView(wholeView(4, [1, 5]), [3, "T", 5]))!.strides).toEqual([
      "0",
      "0",
      "1",
    ]);
  });
});
