/** Names and comments in generated source. IR value names come from the user's model (a DSL
 *  hint, a checkpoint tensor name), so they are never trusted as source text:
 *  - an identifier is made from a name by `Identifiers.take`: ASCII letters, digits and `_` only,
 *    never a reserved word of TypeScript or WGSL, never `kiln_…` (the helpers' prefix), never a
 *    name already taken in the same scope;
 *  - a user string appears in generated source only inside a comment, through `commentText`,
 *    which leaves it no way to end the comment or the line: `*∕` and `∕*` are broken up (WGSL's
 *    block comments nest, so an opener matters there too) and line terminators become spaces. */

/** Words that cannot name a generated variable in TypeScript or WGSL, plus the globals generated
 *  code calls. Case-sensitive, like both languages. */
const RESERVED = new Set(
  [
    // TypeScript / JavaScript (strict mode and contextual words included)
    "abstract any arguments as async await boolean break case catch class const constructor",
    "continue debugger declare default delete do else enum eval export extends false finally for",
    "from function get if implements import in infer instanceof interface is keyof let module",
    "namespace never new null number object of package private protected public readonly",
    "require return set static string super switch symbol this throw true try type typeof",
    "undefined unique unknown var void while with yield",
    // globals that generated TypeScript refers to
    "Math Float32Array Float64Array Int32Array Uint32Array Array Number Infinity NaN Object",
    // WGSL keywords, types and the reserved words most likely to collide
    "alias bitcast bool continuing diagnostic discard f16 f32 fallthrough fn i32 loop override",
    "ptr requires sampler select struct u32 uniform array atomic mat2x2 mat3x3 mat4x4 vec2 vec3",
    "vec4 workgroup storage read write read_write function private handle exp sqrt tanh",
    "inverseSqrt clamp max min abs",
  ]
    .join(" ")
    .split(" "),
);

const MAX_LENGTH = 40;

/** The identifier-safe core of a name: `%ln_f.weight` → `ln_f_weight`, `3d` → `v3d`. */
export function identifierBase(name: string): string {
  let s = name
    .replace(/[^A-Za-z0-9_]+/g, "_")
    .replace(/_+/g, "_")
    .replace(/^_+|_+$/g, "");
  // A long name keeps its end, the part that tells values apart (`….layers.0.mlp.c_fc.bias`).
  if (s.length > MAX_LENGTH) s = s.slice(-MAX_LENGTH).replace(/^_+/, "");
  if (s === "") s = "v";
  if (/^[0-9]/.test(s) || s.startsWith("kiln_") || RESERVED.has(s)) s = `v_${s}`;
  return s;
}

/** The identifiers of one scope: `take` hands out a fresh, safe identifier for a name. */
export class Identifiers {
  private readonly taken = new Set<string>();

  /** `fixed` are identifiers the generator itself uses in this scope (loop counters, …). */
  constructor(fixed: Iterable<string> = []) {
    for (const f of fixed) this.taken.add(f);
  }

  take(name: string): string {
    const base = identifierBase(name);
    let id = base;
    for (let n = 2; this.taken.has(id); n++) id = `${base}_${n}`;
    this.taken.add(id);
    return id;
  }

  has(id: string): boolean {
    return this.taken.has(id);
  }

  /** A prefix p such that no identifier taken so far is p followed by digits: temporaries named
   *  `${p}0`, `${p}1`, … cannot collide (`t`, else `t_`, `t__`, …). */
  tempPrefix(base = "t"): string {
    let p = base;
    const clash = () =>
      [...this.taken].some((id) => id.startsWith(p) && /^\d+$/.test(id.slice(p.length)));
    while (clash()) p += "_";
    return p;
  }
}

/** A user string made safe to place inside a `/* … *∕` or `// …` comment, in TypeScript or WGSL. */
export function commentText(s: string): string {
  // Every line terminator of either language (WGSL counts VT, FF and NEL too).
  let t = s.replace(/[\n\v\f\r\u0085\u2028\u2029]+/g, " ");
  // Breaking one pair can join another (`/*/`), so repeat until none is left.
  while (/\*\/|\/\*/.test(t)) t = t.replace(/\*\//g, "* /").replace(/\/\*/g, "/ *");
  return t;
}
