/** Scalar helper functions that rendered expressions call, as TypeScript or WGSL source.
 *
 *  `kiln_erf` is W. J. Cody's rational Chebyshev approximation ("Rational Chebyshev
 *  approximations for the error function", Math. Comp. 23, 1969; netlib specfun CALERF):
 *  erf(x) = x·R₁(x²) for |x| ≤ 0.46875, and 1 − erfc(|x|) beyond, with
 *  erfc(y) = e^(−y²)·R₂(y) for y ≤ 4 and e^(−y²)/y·(1/√π − R₃(1/y²)/y²) for 4 < y < 6; erf is ±1
 *  from 6 on (erfc(6) ≈ 2e-17). Its error is a few float64 ulps (2e-15), and within 2e-7 when
 *  evaluated in f32 (WGSL) — far inside the 1e-4 bar of float32 paths, where Abramowitz–Stegun
 *  7.1.26 (|error| ≤ 1.5e-7) would pass too but gives no margin for double-precision checks.
 *  e^(−y²) is computed as e^(−s²)·e^(−(y−s)(y+s)) with s = y rounded down to 1/16, as CALERF does,
 *  so the large y² costs no accuracy.
 *
 *  The GELUs use the reference interpreter's formulas (compiler/ir/ops-elementwise.ts), operation
 *  for operation, so in TypeScript `kiln_gelu_tanh` equals the reference to the last bit. */
import { assertNever } from "../errors.ts";
import { renderNumber, type Target } from "./expr-source.ts";

export type Helper = "kiln_erf" | "kiln_gelu" | "kiln_gelu_tanh";

/** Horner coefficients, highest power first (Cody's tables, reordered). */
const ERF_SMALL = {
  num: [
    1.85777706184603153e-1, 3.1611237438705656, 1.13864154151050156e2, 3.77485237685302021e2,
    3.20937758913846947e3,
  ],
  den: [
    1, 2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3, 2.84423683343917062e3,
  ],
};
const ERFC_MID = {
  num: [
    2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594, 6.61191906371416295e1,
    2.98635138197400131e2, 8.8195222124176909e2, 1.71204761263407058e3, 2.05107837782607147e3,
    1.23033935479799725e3,
  ],
  den: [
    1, 1.57449261107098347e1, 1.17693950891312499e2, 5.37181101862009858e2, 1.62138957456669019e3,
    3.29079923573345963e3, 4.36261909014324716e3, 3.43936767414372164e3, 1.23033935480374942e3,
  ],
};
const ERFC_LARGE = {
  num: [
    1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
    1.60837851487422766e-2, 6.58749161529837803e-4,
  ],
  den: [
    1, 2.56852019228982242, 1.87295284992346725, 5.27905102951428412e-1, 6.05183413124413191e-2,
    2.33520497626869185e-3,
  ],
};
/** 1/√π */
const SQRPI = 5.6418958354775628695e-1;
const GELU_TANH_C = Math.sqrt(2 / Math.PI);

function horner(c: readonly number[], v: number, round: (x: number) => number): number {
  let r = c[0];
  for (let i = 1; i < c.length; i++) r = round(round(r * v) + c[i]);
  return r;
}

/** kiln_erf as a plain function, evaluated with `round` after every operation: the identity is
 *  the TypeScript helper, `Math.fround` emulates the WGSL one. For tests. */
export function erfCody(x: number, round: (v: number) => number = (v) => v): number {
  const c = (v: number) => round(v);
  const y = Math.abs(x);
  if (y <= 0.46875) {
    const z = round(y * y);
    const num = horner(ERF_SMALL.num.map(c), z, round);
    return round(round(x * num) / horner(ERF_SMALL.den.map(c), z, round));
  }
  if (y >= 6) return x < 0 ? -1 : 1;
  let r: number;
  if (y <= 4)
    r = round(horner(ERFC_MID.num.map(c), y, round) / horner(ERFC_MID.den.map(c), y, round));
  else {
    const z = round(1 / round(y * y));
    const num = round(z * horner(ERFC_LARGE.num.map(c), z, round));
    r = round(round(c(SQRPI) - round(num / horner(ERFC_LARGE.den.map(c), z, round))) / y);
  }
  const s = round(Math.trunc(round(y * 16)) / 16);
  const d = round(round(y - s) * round(y + s));
  r = round(round(round(Math.exp(round(-s * s))) * round(Math.exp(-d))) * r);
  return x < 0 ? round(r - 1) : round(1 - r);
}

/** The source of the helpers, with everything they call, each once, callees first. */
export function renderHelpers(helpers: Iterable<Helper>, target: Target): string {
  const need = new Set(helpers);
  if (need.has("kiln_gelu")) need.add("kiln_erf");
  const order: readonly Helper[] = ["kiln_erf", "kiln_gelu", "kiln_gelu_tanh"];
  return order
    .filter((h) => need.has(h))
    .map((h) => helperSource(h, target))
    .join("\n");
}

function helperSource(h: Helper, target: Target): string {
  switch (h) {
    case "kiln_erf":
      return target === "ts" ? erfTs() : erfWgsl();
    case "kiln_gelu": {
      const sqrt2 = renderNumber(Math.SQRT2, target);
      return target === "ts"
        ? `/** gelu(x) = x·Φ(x), exact (with erf). */
function kiln_gelu(x: number): number {
  return 0.5 * x * (1 + kiln_erf(x / ${sqrt2}));
}
`
        : `// gelu(x) = x·Φ(x), exact (with erf).
fn kiln_gelu(x: f32) -> f32 {
  return 0.5 * x * (1.0 + kiln_erf(x / ${sqrt2}));
}
`;
    }
    case "kiln_gelu_tanh": {
      const k = renderNumber(GELU_TANH_C, target);
      return target === "ts"
        ? `/** gelu with the tanh approximation (GPT-2's "gelu_new"). */
function kiln_gelu_tanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(${k} * (x + 0.044715 * x * x * x)));
}
`
        : `// gelu with the tanh approximation (GPT-2's "gelu_new"); tanh is ±1 in f32 beyond ±15.
fn kiln_gelu_tanh(x: f32) -> f32 {
  return 0.5 * x * (1.0 + tanh(clamp(${k} * (x + 0.044715 * x * x * x), -15.0, 15.0)));
}
`;
    }
    default:
      return assertNever(h, "helper");
  }
}

/** `((c0 * v + c1) * v + c2) …` as source; a leading coefficient of 1 is left out. */
function hornerSource(c: readonly number[], v: string, target: Target): string {
  let s = c[0] === 1 ? v : `${renderNumber(c[0], target)} * ${v}`;
  for (let i = 1; i < c.length; i++) {
    const term = `${s} + ${renderNumber(c[i], target)}`;
    s = i === c.length - 1 ? term : `(${term}) * ${v}`;
  }
  return s;
}

function erfTs(): string {
  const p = (c: readonly number[], v: string) => hornerSource(c, v, "ts");
  return `/** erf(x): W. J. Cody's rational approximations (netlib specfun CALERF), a few ulps in float64. */
function kiln_erf(x: number): number {
  const y = Math.abs(x);
  if (y <= 0.46875) {
    const z = y * y;
    return (x * (${p(ERF_SMALL.num, "z")})) / (${p(ERF_SMALL.den, "z")});
  }
  if (y >= 6) return x < 0 ? -1 : 1;
  let r: number; // erfc(y) · e^(y²)
  if (y <= 4) {
    r = (${p(ERFC_MID.num, "y")}) / (${p(ERFC_MID.den, "y")});
  } else {
    const z = 1 / (y * y);
    r = (${renderNumber(SQRPI, "ts")} - (z * (${p(ERFC_LARGE.num, "z")})) / (${p(ERFC_LARGE.den, "z")})) / y;
  }
  // e^(−y²) = e^(−s²)·e^(−(y−s)(y+s)), s = y rounded down to 1/16: no precision lost to y².
  const s = Math.trunc(y * 16) / 16;
  r = Math.exp(-s * s) * Math.exp(-(y - s) * (y + s)) * r;
  return x < 0 ? r - 1 : 1 - r;
}
`;
}

function erfWgsl(): string {
  const p = (c: readonly number[], v: string) => hornerSource(c, v, "wgsl");
  return `// erf(x): W. J. Cody's rational approximations (netlib specfun CALERF), within 2e-7 in f32.
fn kiln_erf(x: f32) -> f32 {
  let y = abs(x);
  if (y <= 0.46875) {
    let z = y * y;
    return (x * (${p(ERF_SMALL.num, "z")})) / (${p(ERF_SMALL.den, "z")});
  }
  if (y >= 6.0) {
    return sign(x);
  }
  var r: f32; // erfc(y) · e^(y²)
  if (y <= 4.0) {
    r = (${p(ERFC_MID.num, "y")}) / (${p(ERFC_MID.den, "y")});
  } else {
    let z = 1.0 / (y * y);
    r = (${renderNumber(SQRPI, "wgsl")} - (z * (${p(ERFC_LARGE.num, "z")})) / (${p(ERFC_LARGE.den, "z")})) / y;
  }
  // e^(−y²) = e^(−s²)·e^(−(y−s)(y+s)), s = y rounded down to 1/16: no precision lost to y².
  let s = trunc(y * 16.0) / 16.0;
  r = exp(-s * s) * exp(-(y - s) * (y + s)) * r;
  return select(1.0 - r, r - 1.0, x < 0.0);
}
`;
}
