/** recognize-layer-norm — a layer norm written out by hand becomes one `layer_norm`.
 *  Rule:
 *    mean = reduce_mean(x, a); d = sub(x, mean); var = reduce_mean(mul(d, d), a)
 *    n    = div(d, sqrt(add(var, eps)))   or   mul(d, rsqrt(add(var, eps)))
 *    y    = add(mul(n, γ), β)                                 ⇒  y = layer_norm(x, γ, β) {eps}
 *  The commutative ops match either way round (add(eps, var), mul(rsqrt(…), d), mul(γ, n),
 *  add(β, …)); the square is mul(d, d) (there is no pow op).
 *  Preconditions, each refused with a NotFused naming the reason (one per candidate, at the
 *  mean): a is the last axis; eps is a positive constant that does not widen var's shape; γ and β
 *  are [C] vectors of x's dtype, C = x's last dim (the plain normalization, without γ and β, is
 *  refused too: layer_norm takes both); every intermediate (mean … mul(n, γ)) has no user outside
 *  the pattern and is not a graph output. Run after cse, so that the two uses of d (or two
 *  spellings of the same mean) are one node. */
import { nodeData, operands, topoOrder, type Graph } from "../ir/graph.ts";
import { inferType } from "../ir/infer.ts";
import { formatType, shapeEq } from "../ir/shape.ts";
import type { NotFused, Pass } from "./pass.ts";
import { asGraph, coversOf, describe, draft, dropUnused, freeze, replaceNode } from "./rewrite.ts";

const NAME = "recognize-layer-norm";

/** The normalization core, found loosely (before its preconditions are checked). */
interface Core {
  readonly x: string;
  readonly axis: number;
  readonly mean: string;
  readonly d: string;
  readonly sq: string;
  readonly variance: string;
  readonly plusEps: string;
  readonly eps: string;
  /** sqrt(var + eps) when n divides by it, rsqrt(var + eps) when n multiplies. */
  readonly root: string;
  readonly n: string;
}

const op = (g: Graph, k: string) => nodeData(g, k).op;

/** Users of `k` (in insertion order) with op `o` whose operands satisfy `ok`. */
function userWith(
  g: Graph,
  k: string,
  o: string,
  ok: (ins: string[]) => boolean = () => true,
): string | undefined {
  return g.nodes.outNeighbors(k).find((u) => op(g, u) === o && ok(operands(g, u)));
}

/** The other operand of a binary op `k` that has `one` as an operand. */
function other(g: Graph, k: string, one: string): string {
  const [a, b] = operands(g, k);
  return a === one ? b : a;
}

function findCore(g: Graph, mean: string): Core | undefined {
  const m = nodeData(g, mean);
  if (m.op !== "reduce_mean") return undefined;
  const axis = m.attrs.axis;
  const [x] = operands(g, mean);
  const d = userWith(g, mean, "sub", ([a, b]) => a === x && b === mean);
  if (!d) return undefined;
  const sq = userWith(g, d, "mul", ([a, b]) => a === d && b === d);
  if (!sq) return undefined;
  const variance = g.nodes.outNeighbors(sq).find((u) => {
    const v = nodeData(g, u);
    return v.op === "reduce_mean" && v.attrs.axis === axis;
  });
  if (!variance) return undefined;
  const plusEps = userWith(g, variance, "add", (ins) => ins.some((i) => i !== variance));
  if (!plusEps) return undefined;
  const eps = other(g, plusEps, variance);
  const sqrt = userWith(g, plusEps, "sqrt");
  const sqrtN = sqrt && userWith(g, sqrt, "div", ([a, b]) => a === d && b === sqrt);
  if (sqrt && sqrtN) return { x, axis, mean, d, sq, variance, plusEps, eps, root: sqrt, n: sqrtN };
  const rsqrt = userWith(g, plusEps, "rsqrt");
  const rsqrtN =
    rsqrt &&
    userWith(g, rsqrt, "mul", ([a, b]) => (a === d && b === rsqrt) || (a === rsqrt && b === d));
  if (rsqrt && rsqrtN)
    return { x, axis, mean, d, sq, variance, plusEps, eps, root: rsqrt, n: rsqrtN };
  return undefined;
}

/** The nodes each intermediate may be used by; anything else is a second user. */
function onlyUsers(g: Graph, k: string, allowed: readonly string[]): string | undefined {
  if (g.outputs.includes(k)) return `%${k} is also a graph output`;
  const extra = g.nodes.outNeighbors(k).find((u) => !allowed.includes(u));
  return extra && `%${k} has another user, %${extra}`;
}

/** A [C] vector of x's dtype, or why not. */
function vectorProblem(g: Graph, what: string, v: string, x: string): string | undefined {
  const [vt, xt] = [nodeData(g, v).type, nodeData(g, x).type];
  const c = xt.shape[xt.shape.length - 1];
  if (vt.dtype === xt.dtype && shapeEq(vt.shape, [c])) return undefined;
  return `${what} %${v} is ${formatType(vt)}, not ${xt.dtype}[${c}] (x's last dim)`;
}

type Match =
  | {
      readonly ok: true;
      readonly eps: number;
      readonly scale: string;
      readonly gamma: string;
      readonly beta: string;
      readonly y: string;
    }
  | { readonly ok: false; readonly reason: string };

function check(g: Graph, c: Core): Match {
  const no = (reason: string): Match => ({ ok: false, reason });
  const rank = nodeData(g, c.x).type.shape.length;
  if (c.axis !== rank - 1)
    return no(`normalizes over axis ${c.axis}, not the last axis (${rank - 1})`);
  const e = nodeData(g, c.eps);
  if (e.op !== "const") return no(`eps %${c.eps} is not a constant`);
  if (!shapeEq(nodeData(g, c.plusEps).type.shape, nodeData(g, c.variance).type.shape))
    return no(`eps %${c.eps} (${formatType(e.type)}) widens the variance's shape`);
  if (!(e.attrs.value > 0)) return no(`eps ${e.attrs.value} is not positive`);
  const shared =
    onlyUsers(g, c.mean, [c.d]) ??
    onlyUsers(g, c.d, [c.sq, c.n]) ??
    onlyUsers(g, c.sq, [c.variance]) ??
    onlyUsers(g, c.variance, [c.plusEps]) ??
    onlyUsers(g, c.plusEps, [c.root]) ??
    onlyUsers(g, c.root, [c.n]);
  if (shared) return no(shared);
  const scale = userWith(g, c.n, "mul");
  if (!scale) return no(`%${c.n} is a plain normalization, without γ and β`);
  const gamma = other(g, scale, c.n);
  const badGamma = vectorProblem(g, "γ", gamma, c.x);
  if (badGamma) return no(badGamma);
  const nShared = onlyUsers(g, c.n, [scale]);
  if (nShared) return no(nShared);
  const y = userWith(g, scale, "add");
  if (!y) return no(`%${scale} scales by γ but adds no β`);
  const beta = other(g, y, scale);
  const badBeta = vectorProblem(g, "β", beta, c.x);
  if (badBeta) return no(badBeta);
  const sShared = onlyUsers(g, scale, [y]);
  if (sShared) return no(sShared);
  const t = inferType(
    "layer_norm",
    { eps: e.attrs.value },
    [c.x, gamma, beta].map((k) => nodeData(g, k).type),
  );
  const yt = nodeData(g, y).type;
  if (typeof t === "string") return no(t);
  if (t.dtype !== yt.dtype || !shapeEq(t.shape, yt.shape))
    return no(`layer_norm would give ${formatType(t)}, not %${y}'s ${formatType(yt)}`);
  return { ok: true, eps: e.attrs.value, scale, gamma, beta, y };
}

export const recognizeLayerNorm: Pass = {
  name: NAME,
  run: (g) => {
    const d = draft(g);
    const dg = asGraph(d);
    const notFused: NotFused[] = [];
    let rewrites = 0;
    for (const mean of topoOrder(g)) {
      if (!d.nodes.hasNode(mean)) continue;
      const core = findCore(dg, mean);
      if (!core) continue;
      const m = check(dg, core);
      if (!m.ok) {
        notFused.push({ pattern: NAME, at: describe(dg, mean), reason: m.reason });
        continue;
      }
      const { scale } = m;
      const absorbed = [
        core.mean,
        core.d,
        core.sq,
        core.variance,
        core.plusEps,
        core.root,
        core.n,
        scale,
        m.y,
      ];
      // eps becomes an attribute; the const goes too unless something else reads it
      if (dg.nodes.outDegree(core.eps) === 1) absorbed.push(core.eps);
      const covers = new Set(absorbed.flatMap((k) => coversOf(dg, k)));
      const y = nodeData(dg, m.y);
      replaceNode(
        d,
        m.y,
        {
          op: "layer_norm",
          attrs: { eps: m.eps },
          type: y.type,
          ...(y.loc !== undefined ? { loc: y.loc } : {}),
          origin: NAME,
          covers: [...covers],
        },
        [core.x, m.gamma, m.beta],
      );
      dropUnused(d, [scale]);
      rewrites++;
    }
    return { graph: freeze(d), rewrites, notFused };
  },
};
