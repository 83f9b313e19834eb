/** expr-source: rendered expressions compute what evalExpr computes (random expressions over the
 *  whole grammar, evaluated with `new Function` — in this test only); temporaries exactly for
 *  subexpressions used twice; parentheses where precedence needs them; WGSL's literal rules; the
 *  erf helper against compiler/ir/erf.ts in float64 and in emulated f32. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  renderExpr,
  renderNumber,
  type ExprContext,
  type Target,
} from "../../../compiler/codegen/expr-source.ts";
import { erfCody, renderHelpers } from "../../../compiler/codegen/helpers.ts";
import { KilnError } from "../../../compiler/errors.ts";
import { erf } from "../../../compiler/ir/erf.ts";
import {
  ACC,
  binary,
  constant,
  evalExpr,
  formatExpr,
  input,
  parseExpr,
  unary,
  type Expr,
} from "../../../compiler/ir/expr.ts";
import { UNARY_FN, type BinaryOp, type UnaryOp } from "../../../compiler/ir/ops-elementwise.ts";
import { toJs } from "./load.ts";

const UNARY = Object.keys(UNARY_FN) as UnaryOp[];
const BINARY: BinaryOp[] = ["add", "sub", "mul", "div"];
const ARITY = 3;

function parse(text: string): Expr {
  const e = parseExpr(text);
  if (typeof e === "string") throw new Error(e);
  return e;
}

/** Random expressions over the grammar: `$0…$2`, acc, constants (special values included). */
function exprArb(
  constants: fc.Arbitrary<number>,
  ops: readonly UnaryOp[] = UNARY,
): fc.Arbitrary<Expr> {
  const { e } = fc.letrec<{ e: Expr }>((tie) => ({
    e: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      fc.nat(ARITY - 1).map(input),
      fc.constant(ACC),
      constants.map(constant),
      fc.tuple(fc.constantFrom(...ops), tie("e")).map(([op, a]) => unary(op, a)),
      fc
        .tuple(fc.constantFrom(...BINARY), tie("e"), tie("e"))
        .map(([op, a, b]) => binary(op, a, b)),
      // a subexpression used twice, so that temporaries are exercised
      fc.tuple(fc.constantFrom(...BINARY), tie("e")).map(([op, a]) => binary(op, a, a)),
    ),
  }));
  return e;
}

const ANY_CONSTANT = fc.oneof(
  fc.constantFrom(0, -0, 1, -1, 0.5, -2.5, 1e-7, 3e38, 1e300, Infinity, -Infinity, NaN),
  fc.double({ min: -10, max: 10, noNaN: true }),
);
const FINITE_CONSTANT = fc.oneof(
  fc.constantFrom(0, -0, 1, -1, 0.5, -2.5, 0.125),
  fc.double({ min: -4, max: 4, noNaN: true }),
);
const VALUES = fc.array(
  fc.oneof(fc.double({ min: -6, max: 6, noNaN: true }), fc.constantFrom(0, -0, 1e-30)),
  {
    minLength: ARITY + 1,
    maxLength: ARITY + 1,
  },
);

/** The TS helpers as JavaScript, once. */
const HELPERS_JS = toJs(renderHelpers(["kiln_erf", "kiln_gelu", "kiln_gelu_tanh"], "ts"));

/** JavaScript versions of the WGSL builtins rendered expressions use (float64); the TypeScript
 *  helpers stand in for the WGSL ones. */
const WGSL_BUILTINS = `
const exp = Math.exp, sqrt = Math.sqrt, tanh = Math.tanh;
const inverseSqrt = (x) => 1 / Math.sqrt(x);
const clamp = (x, lo, hi) => Math.min(Math.max(x, lo), hi);
const select = (f, t, c) => (c ? t : f);
`;

type Compiled = (x: readonly number[], acc: number) => number;

/** The rendered expression as a function of (x, acc); `$i` is rendered as `x[i]` or a name `xi`. */
function compile(e: Expr, target: Target, names: boolean): Compiled {
  const ctx: ExprContext = { target, acc: "acc", input: (i) => (names ? `x${i}` : `x[${i}]`) };
  const r = renderExpr(e, ctx);
  const bind = names
    ? `const [${Array.from({ length: ARITY }, (_, i) => `x${i}`).join(", ")}] = x;`
    : "";
  // WGSL `let` is JavaScript's too; only the builtins need stand-ins.
  const prelude = target === "ts" ? HELPERS_JS : `${HELPERS_JS}\n${WGSL_BUILTINS}`;
  const body = `"use strict";\n${prelude}\nreturn (x, acc) => {\n${bind}\n${r.temps.join("\n")}\nreturn ${r.value};\n};`;
  return new Function(body)() as Compiled;
}

const usesGelu = (e: Expr): boolean => /\bgelu\(/.test(formatExpr(e));

describe("renderExpr, TypeScript", () => {
  it("computes evalExpr's number bit for bit, except through erf", () => {
    fc.assert(
      fc.property(exprArb(ANY_CONSTANT), VALUES, fc.boolean(), (e, v, names) => {
        const f = compile(e, "ts", names);
        const ins = v.slice(0, ARITY);
        const [got, want] = [f(ins, v[ARITY]), evalExpr(e, ins, v[ARITY])];
        if (!usesGelu(e)) return Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want));
        if (Number.isNaN(want) || !Number.isFinite(want))
          return Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want));
        return Math.abs(got - want) <= 1e-9 * Math.max(1, Math.abs(want));
      }),
      { numRuns: 400 },
    );
  });

  it("names a subexpression only when it is used twice", () => {
    const ctx: ExprContext = { target: "ts", acc: "acc", input: (i) => `x[${i}]` };
    expect(renderExpr(parse("exp(add(acc, $0))"), ctx)).toMatchObject({
      temps: [],
      value: "Math.exp(acc + x[0])",
    });
    expect(renderExpr(parse("mul(add(acc, $0), add(acc, $0))"), ctx)).toMatchObject({
      temps: ["const t0 = acc + x[0];"],
      value: "t0 * t0",
    });
    // the repeated subexpression's own parts are computed once, inside its temporary
    expect(
      renderExpr(parse("add(mul(exp(acc), exp(acc)), mul(exp(acc), exp(acc)))"), ctx),
    ).toMatchObject({
      temps: ["const t0 = Math.exp(acc);", "const t1 = t0 * t0;"],
      value: "t1 + t1",
    });
    // relu reads its operand twice; a name or a constant is repeated, anything else is named
    expect(renderExpr(parse("relu(acc)"), ctx).value).toBe("acc > 0 ? acc : 0");
    expect(renderExpr(parse("relu(add(acc, $0))"), ctx)).toMatchObject({
      temps: ["const t0 = acc + x[0];"],
      value: "t0 > 0 ? t0 : 0",
    });
    // an element read used twice is read once
    expect(renderExpr(parse("mul($1, $1)"), ctx)).toMatchObject({
      temps: ["const t0 = x[1];"],
      value: "t0 * t0",
    });
    expect(renderExpr(parse("mul($1, $1)"), { ...ctx, input: (i) => `x${i}` })).toMatchObject({
      temps: [],
      value: "x1 * x1",
    });
    expect(
      renderExpr(parse("mul(add(acc, $0), add(acc, $0))"), { ...ctx, temp: "u_" }).temps,
    ).toEqual(["const u_0 = acc + x[0];"]);
  });

  it("parenthesizes where precedence and float rounding need it, nowhere else", () => {
    const r = (text: string) =>
      renderExpr(parse(text), { target: "ts", acc: "acc", input: (i) => `x${i}` }).value;
    expect(r("sub(x, sub($0, $1))".replace("x", "acc"))).toBe("acc - (x0 - x1)");
    expect(r("sub(sub(acc, $0), $1)")).toBe("acc - x0 - x1");
    expect(r("add(acc, add($0, $1))")).toBe("acc + (x0 + x1)"); // not reassociated
    expect(r("add(acc, mul($0, $1))")).toBe("acc + x0 * x1");
    expect(r("mul(add(acc, $0), $1)")).toBe("(acc + x0) * x1");
    expect(r("div($0, mul(acc, $1))")).toBe("x0 / (acc * x1)");
    expect(r("neg(neg(acc))")).toBe("-(-acc)");
    expect(r("neg(-1)")).toBe("-(-1)");
    expect(r("add(acc, -1)")).toBe("acc + -1");
    expect(r("sub(acc, neg($0))")).toBe("acc - -x0");
    expect(r("mul(neg(acc), $0)")).toBe("-acc * x0");
    expect(r("div(1, rsqrt(acc))")).toBe("1 / (1 / Math.sqrt(acc))");
    expect(r("mul(relu(acc), 2)")).toBe("(acc > 0 ? acc : 0) * 2");
    expect(r("gelu(add(acc, $0))")).toBe("kiln_gelu(acc + x0)");
    expect(r("add(acc, -inf)")).toBe("acc + -Infinity");
  });

  it("reports the helpers it calls; renderHelpers adds their callees once", () => {
    const h = renderExpr(parse("add(gelu(acc), gelu_tanh($0))"), {
      target: "ts",
      acc: "acc",
      input: (i) => `x${i}`,
    }).helpers;
    expect([...h].sort()).toEqual(["kiln_gelu", "kiln_gelu_tanh"]);
    const src = renderHelpers(h, "ts");
    expect(src.match(/function kiln_erf\(/g)).toHaveLength(1);
    expect(src.indexOf("function kiln_erf(")).toBeLessThan(src.indexOf("function kiln_gelu("));
    expect(renderHelpers([], "ts")).toBe("");
  });
});

describe("renderExpr, WGSL", () => {
  const ctx: ExprContext = { target: "wgsl", acc: "acc", input: (i) => `x[${i}]` };

  it("writes every literal as an f32 literal, with no Inf or NaN", () => {
    fc.assert(
      fc.property(exprArb(ANY_CONSTANT.filter((v) => !Number.isNaN(v))), (e) => {
        const r = renderExpr(e, ctx);
        const text = [...r.temps, r.value].join("\n").replace(/\/\*.*?\*\//g, "");
        expect(text).not.toMatch(/Infinity|NaN|--/);
        // every number token (not an index x[i], not part of a name) has a point or an exponent
        for (const m of text.matchAll(/(?<![\w.[])\d[\d.]*(e[-+]?\d+)?(?![\w.\]])/g))
          expect(m[0], text).toMatch(/[.e]/);
      }),
      { numRuns: 300 },
    );
    expect(renderNumber(2, "wgsl")).toBe("2.0");
    expect(renderNumber(-0, "wgsl")).toBe("-0.0");
    expect(renderNumber(1e-7, "wgsl")).toBe("1e-7");
    expect(renderNumber(0.125, "wgsl")).toBe("0.125");
    expect(renderNumber(-Infinity, "wgsl")).toBe("-3.4e38 /* -inf: WGSL assumes finite math */");
    expect(renderNumber(Infinity, "wgsl")).toBe("3.4e38 /* +inf: WGSL assumes finite math */");
    expect(() => renderNumber(NaN, "wgsl")).toThrow(KilnError);
    expect(renderNumber(-1e300, "wgsl")).toBe(
      "-3.4e38 /* -1e+300 is beyond f32: WGSL assumes finite math */",
    );
    expect(renderNumber(3e38, "wgsl")).toBe("3e+38");
  });

  it("computes evalExpr's number (read as JavaScript, with the builtins' float64 meanings)", () => {
    fc.assert(
      fc.property(exprArb(FINITE_CONSTANT), VALUES, (e, v) => {
        const f = compile(e, "wgsl", false);
        const ins = v.slice(0, ARITY);
        const [got, want] = [f(ins, v[ARITY]), evalExpr(e, ins, v[ARITY])];
        if (!Number.isFinite(want))
          return Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want));
        // tanh's clamp at ±15 moves tanh by 2e-13 at most; erf (the helper) by 1e-15
        return Math.abs(got - want) <= 1e-9 * Math.max(1, Math.abs(want));
      }),
      { numRuns: 300 },
    );
  });

  it("uses WGSL's forms: select, inverseSqrt, a clamped tanh, let temporaries", () => {
    const r = (text: string) => renderExpr(parse(text), ctx);
    expect(r("relu(add(acc, $0))")).toMatchObject({
      temps: ["let t0 = acc + x[0];"],
      value: "select(0.0, t0, t0 > 0.0)",
    });
    expect(r("rsqrt(add(acc, 0.00001))").value).toBe("inverseSqrt(acc + 0.00001)");
    expect(r("tanh(acc)").value).toBe("tanh(clamp(acc, -15.0, 15.0))");
    expect(r("mul(acc, 3)").value).toBe("acc * 3.0");
    expect(r("add(acc, -1)").value).toBe("acc + -1.0");
  });
});

describe("kiln_erf", () => {
  const xs = fc.oneof(
    fc.double({ min: -8, max: 8, noNaN: true }),
    fc.double({ min: -0.5, max: 0.5, noNaN: true }),
  );
  const helper = new Function(`${HELPERS_JS}\nreturn kiln_erf;`)() as (x: number) => number;

  it("is within a few float64 ulps of compiler/ir/erf.ts, and the test mirror is the helper", () => {
    fc.assert(
      fc.property(xs, (x) => {
        expect(Math.abs(helper(x) - erf(x))).toBeLessThanOrEqual(4e-15);
        expect(Object.is(erfCody(x), helper(x))).toBe(true);
      }),
      { numRuns: 3000 },
    );
    expect([
      helper(0),
      helper(-0),
      helper(6),
      helper(-40),
      helper(Infinity),
      helper(-Infinity),
    ]).toEqual([0, -0, 1, -1, 1, -1]);
    expect(helper(NaN)).toBeNaN();
  });

  it("evaluated in f32 (WGSL), is within 2e-7 of erf, and GELU within 1e-6 relative", () => {
    const f32 = (x: number) => erfCody(x, Math.fround);
    fc.assert(
      fc.property(xs.map(Math.fround), (x) => {
        expect(Math.abs(f32(x) - erf(x))).toBeLessThanOrEqual(2e-7);
        const r = Math.fround;
        const gelu = r(r(r(0.5 * x) * r(1 + f32(r(x / r(Math.SQRT2))))));
        const want = UNARY_FN.gelu(x);
        expect(Math.abs(gelu - want) / Math.max(1, Math.abs(want))).toBeLessThanOrEqual(1e-6);
      }),
      { numRuns: 3000 },
    );
  });
});
