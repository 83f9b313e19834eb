/** names: identifiers made from IR names are safe and distinct; user text in comments cannot
 *  end the comment or the line, in TypeScript or WGSL (whose block comments nest). */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { commentText, identifierBase, Identifiers } from "../../../compiler/codegen/names.ts";
import { toJs } from "./load.ts";

describe("identifiers", () => {
  it("keep IR names that are already identifiers, and sanitize the rest", () => {
    expect(identifierBase("ln_2")).toBe("ln_2");
    expect(identifierBase("%h.0.mlp.c_fc.weight")).toBe("h_0_mlp_c_fc_weight");
    expect(identifierBase("3d")).toBe("v_3d");
    expect(identifierBase("class")).toBe("v_class");
    expect(identifierBase("f32")).toBe("v_f32");
    expect(identifierBase("kiln_erf")).toBe("v_kiln_erf");
    expect(identifierBase("ünïcödé")).toBe("n_c_d");
    expect(identifierBase("")).toBe("v");
    expect(identifierBase(`${"x".repeat(50)}.layers.11.bias`)).toBe(
      "xxxxxxxxxxxxxxxxxxxxxxxxx_layers_11_bias",
    );
  });

  it("are valid, distinct, and never one of the scope's fixed names, whatever the input", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: "binary" }), { maxLength: 12 }), (names) => {
        const ids = new Identifiers(["i", "acc", "K"]);
        const taken = names.map((n) => ids.take(n));
        expect(new Set(taken).size).toBe(taken.length);
        for (const id of taken) {
          expect(id).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
          expect(["i", "acc", "K"]).not.toContain(id);
          // a declaration with it parses
          toJs(`const ${id} = 1;`);
        }
      }),
    );
    const ids = new Identifiers(["acc"]);
    expect([ids.take("acc"), ids.take("acc"), ids.take("x"), ids.take("x")]).toEqual([
      "acc_2",
      "acc_3",
      "x",
      "x_2",
    ]);
  });

  it("give temporaries a prefix no taken name continues with digits", () => {
    expect(new Identifiers(["tile"]).tempPrefix()).toBe("t");
    const ids = new Identifiers();
    ids.take("t0");
    expect(ids.tempPrefix()).toBe("t_");
  });
});

describe("commentText", () => {
  it("cannot close a comment or end a line", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.constantFrom("*", "/", "\n", "\r", "\u2028", "\u2029", "\u0085", "\v", "\f", "a", " "),
          { maxLength: 30 },
        ),
        (parts) => {
          const t = commentText(parts.join(""));
          expect(t).not.toMatch(/\*\/|\/\*|[\n\r\v\f\u0085\u2028\u2029]/);
          // both comment forms still hold it as one comment before the code after it
          expect(toJs(`/* ${t} */ export const after = 1;`)).toMatch(/after = 1/);
          expect(toJs(`// ${t}\nexport const after = 1;`)).toMatch(/after = 1/);
        },
      ),
    );
    expect(commentText("a */ b /* c\nd")).toBe("a * / b / * c d");
  });
});
