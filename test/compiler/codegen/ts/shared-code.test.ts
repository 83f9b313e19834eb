/** Which kernels share a function (compiler/codegen/ts/shared-code.ts): the same code after the
 *  declared name, packs included; anything else keeps its own. */
import { describe, expect, it } from "vitest";
import type { KernelFunction } from "../../../../compiler/codegen/ts/kernel.ts";
import { codeOf, sharedCode } from "../../../../compiler/codegen/ts/shared-code.ts";

const fn = (name: string, body: string, doc = `${name}: some IR line`, pack?: string) =>
  ({
    name,
    params: [],
    helpers: new Set(),
    source: `/** ${doc} */\nexport function ${name}(x: Float32Array): void {\n  ${body}\n}\n`,
    ...(pack
      ? {
          pack: {
            name: `pack_${name}`,
            params: [],
            source: `/** packs for ${name} */\nexport function pack_${name}(w: Float32Array): Float32Array {\n  ${pack}\n}\n`,
          },
        }
      : {}),
  }) as KernelFunction;

describe("codeOf", () => {
  it("is the text after the declared name, its header comment left out", () => {
    expect(codeOf(fn("k1_map", "x[0] = 1;").source, "k1_map")).toBe(
      "x: Float32Array): void {\n  x[0] = 1;\n}\n",
    );
  });

  it("is undefined for a source that does not declare that name at the start of a line", () => {
    expect(codeOf(fn("k1_map", "x[0] = 1;").source, "k2_map")).toBeUndefined();
    // a header comment that spells a declaration is not one
    const tricky = `/**\n * export function k9(\n */\nconst k9 = 1;\n`;
    expect(codeOf(tricky, "k9")).toBeUndefined();
  });
});

describe("sharedCode", () => {
  it("points kernels with the same code at the first of them, whatever their headers say", () => {
    const fns = [
      fn("k0_map", "x[0] = 1;", "layer 0"),
      fn("k1_map", "x[0] = 2;"),
      fn("k2_map", "x[0] = 1;", "layer 1"),
      fn("k3_map", "x[0] = 1;", "layer 2"),
    ];
    expect(sharedCode(fns)).toEqual([0, 1, 0, 0]);
  });

  it("keeps apart kernels whose packs differ, and a packing kernel from one that does not pack", () => {
    const fns = [
      fn("k0_mm", "x[0] = 1;", "a", "return w;"),
      fn("k1_mm", "x[0] = 1;", "b", "return w.slice();"),
      fn("k2_mm", "x[0] = 1;", "c"),
      fn("k3_mm", "x[0] = 1;", "d", "return w.slice();"),
    ];
    expect(sharedCode(fns)).toEqual([0, 1, 2, 1]);
  });

  it("keeps apart a kernel whose body spells its own name (an error message, say)", () => {
    const fns = [fn("k0_g", 'throw new Error("k0_g");'), fn("k1_g", 'throw new Error("k1_g");')];
    expect(sharedCode(fns)).toEqual([0, 1]);
  });
});
