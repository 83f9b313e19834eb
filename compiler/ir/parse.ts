/** Text IR parser: the inverse of `printGraph`. Every error names the line and what was expected.
 *  The parsed graph is verified, so a recorded type that disagrees with its op is an error too. */
import { fail } from "../errors.ts";
import { isDType } from "./dtype.ts";
import { parseExpr } from "./expr.ts";
import { addNode, newNodeStore, type DimBound, type Graph, type NodeData } from "./graph.ts";
import { OPS, isOpName, type AnyAttrs, type AttrKind, type OpDecl, type OpName } from "./ops.ts";
import { inferType } from "./infer.ts";
import { formatType, shapeEq, type Dim, type TensorType } from "./shape.ts";
import { checkAttr, verify } from "./verify.ts";

type Tok =
  | { t: "val"; s: string } // %name
  | { t: "graph"; s: string } // @name
  | { t: "word"; s: string } // identifier or symbolic dim (T, P+T), true/false, inf
  | { t: "num"; v: number; s: string }
  | { t: "str"; s: string }
  | { t: "punct"; s: string };

const TOKEN =
  /\s*(?:(%[A-Za-z0-9_.]+)|(@[A-Za-z0-9_.]+)|("(?:[^"\\]|\\.)*")|(-?inf(?![\w+])|nan(?![\w+])|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*(?:\+[A-Za-z0-9_]+)*)|(->|<=|[()[\]{},:=]))/y;

class Line {
  private toks: Tok[] = [];
  private i = 0;
  constructor(
    readonly text: string,
    readonly where: string,
  ) {
    TOKEN.lastIndex = 0;
    while (TOKEN.lastIndex < text.length && text.slice(TOKEN.lastIndex).trim() !== "") {
      const start = TOKEN.lastIndex;
      const m = TOKEN.exec(text);
      if (!m)
        this.err(
          `unexpected text at column ${start + 1}: ${JSON.stringify(text.slice(start, start + 20))}`,
        );
      if (m[1]) this.toks.push({ t: "val", s: m[1].slice(1) });
      else if (m[2]) this.toks.push({ t: "graph", s: m[2].slice(1) });
      else if (m[3]) this.toks.push({ t: "str", s: JSON.parse(m[3]) as string });
      else if (m[4])
        this.toks.push({
          t: "num",
          s: m[4],
          v:
            m[4] === "nan"
              ? NaN
              : m[4].endsWith("inf")
                ? m[4][0] === "-"
                  ? -Infinity
                  : Infinity
                : Number(m[4]),
        });
      else if (m[5]) this.toks.push({ t: "word", s: m[5] });
      else this.toks.push({ t: "punct", s: m[6] });
    }
  }
  err(msg: string): never {
    fail("ir", this.where, msg);
  }
  peek(): Tok | undefined {
    return this.toks[this.i];
  }
  done(): boolean {
    return this.i >= this.toks.length;
  }
  next(what: string): Tok {
    const t = this.toks[this.i++];
    if (!t) this.err(`expected ${what}, found end of line`);
    return t;
  }
  punct(s: string): void {
    const t = this.next(`'${s}'`);
    if (t.t !== "punct" || t.s !== s) this.err(`expected '${s}'`);
  }
  isPunct(s: string): boolean {
    const t = this.peek();
    return t?.t === "punct" && t.s === s;
  }
  val(): string {
    const t = this.next("a %value");
    if (t.t !== "val") this.err("expected a %value");
    return t.s;
  }
  dim(): Dim {
    const t = this.next("a dim");
    if (t.t === "num" && Number.isSafeInteger(t.v) && t.v >= 0) return t.v;
    if (t.t === "word") return t.s;
    if (t.t === "num" && (t.s === "inf" || t.s === "nan")) return t.s; // symbols that read like numbers
    this.err("expected a dim (a size or a symbol)");
  }
  list<X>(item: () => X): X[] {
    this.punct("[");
    const out: X[] = [];
    while (!this.isPunct("]")) {
      out.push(item());
      if (!this.isPunct("]")) this.punct(",");
    }
    this.punct("]");
    return out;
  }
  type(): TensorType {
    const t = this.next("a type such as f32[T,768]");
    if (t.t !== "word" || !isDType(t.s)) this.err("expected a dtype (f32, f16, i32)");
    return { dtype: t.s, shape: this.list(() => this.dim()) };
  }
  attr(kind: AttrKind, name: string): unknown {
    let v: unknown;
    if (kind === "dims") v = this.list(() => this.dim());
    else if (kind === "ints") v = this.list(() => this.number());
    else if (kind === "dim") v = this.dim();
    else if (kind === "expr") {
      const t = this.next(`an expression for ${name}`);
      if (t.t !== "str") this.err(`attribute ${name} must be a quoted expression`);
      const e = parseExpr(t.s);
      if (typeof e === "string") this.err(`attribute ${name}: ${e}`);
      v = e;
    } else {
      const t = this.next(`a value for ${name}`);
      v =
        t.t === "num"
          ? t.v
          : t.t === "str"
            ? t.s
            : t.t === "word" && (t.s === "true" || t.s === "false")
              ? t.s === "true"
              : undefined;
    }
    if (!checkAttr(kind, v)) this.err(`attribute ${name} must be ${kind}`);
    return v;
  }
  number(): number {
    const t = this.next("a number");
    if (t.t !== "num") this.err("expected a number");
    return t.v;
  }
}

function splitComment(raw: string): [string, string | undefined] {
  // A '#' inside a quoted string is not a comment.
  let inStr = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (inStr && c === "\\") i++;
    else if (c === '"') inStr = !inStr;
    else if (c === "#" && !inStr) return [raw.slice(0, i), raw.slice(i + 1).trim()];
  }
  return [raw, undefined];
}

function parseComment(c: string | undefined): { origin?: string; loc?: string } {
  if (!c) return {};
  const at = c.indexOf("@ ");
  const origin = (at < 0 ? c : c.slice(0, at)).trim();
  return { ...(origin ? { origin } : {}), ...(at >= 0 ? { loc: c.slice(at + 2).trim() } : {}) };
}

export function parseGraph(text: string, file = "<ir>"): Graph {
  const lines = text.split("\n");
  let n = 0;
  const where = () => `${file}:${n}`;
  const nextLine = (): string | undefined => {
    while (n < lines.length) {
      const raw = lines[n++];
      if (raw.trim() !== "" && !raw.trim().startsWith("#")) return raw;
    }
    return undefined;
  };
  const head = nextLine();
  if (head === undefined) fail("ir", file, "empty IR text");
  const h: Line = new Line(head, where());
  const kw = h.next("'graph'");
  if (kw.t !== "word" || kw.s !== "graph") h.err("expected 'graph @name(...) -> (...) {'");
  const name = h.next("@name");
  if (name.t !== "graph") h.err("expected @name");
  const store = newNodeStore();
  const inputs: string[] = [];
  h.punct("(");
  while (!h.isPunct(")")) {
    const k = h.val();
    h.punct(":");
    const type = h.type();
    if (store.hasNode(k)) h.err(`%${k} defined twice`);
    addNode(store, k, { op: "input", attrs: { name: k }, type }, []);
    inputs.push(k);
    if (!h.isPunct(")")) h.punct(",");
  }
  h.punct(")");
  h.punct("->");
  h.punct("(");
  const outTypes: TensorType[] = [];
  while (!h.isPunct(")")) {
    outTypes.push(h.type());
    if (!h.isPunct(")")) h.punct(",");
  }
  h.punct(")");
  h.punct("{");
  const bounds = new Map<string, DimBound>();
  let outputs: string[] | undefined;
  for (let raw = nextLine(); raw !== undefined; raw = nextLine()) {
    const [code, com] = splitComment(raw);
    const l: Line = new Line(code, where());
    const first = l.next("a statement");
    if (first.t === "punct" && first.s === "}") {
      if (!l.done()) l.err("unexpected text after '}'");
      if (!outputs) l.err("graph has no return");
      if (nextLine() !== undefined) fail("ir", where(), "text after the closing '}'");
      return verify({ name: name.s, nodes: store, inputs, outputs, bounds });
    }
    if (outputs) l.err("statement after return");
    if (first.t === "word" && first.s === "dim") {
      const sym = l.next("a symbol");
      if (sym.t !== "word" && !(sym.t === "num" && (sym.s === "inf" || sym.s === "nan")))
        l.err("expected a symbol");
      l.punct("<=");
      const max = l.number();
      const why = l.next("a quoted reason");
      if (why.t !== "str") l.err("expected a quoted reason");
      bounds.set(sym.s, { max, why: why.s });
    } else if (first.t === "word" && first.s === "return") {
      outputs = [];
      while (!l.done()) {
        const k = l.val();
        if (!store.hasNode(k)) l.err(`%${k} is not defined`);
        outputs.push(k);
        if (!l.done()) l.punct(",");
      }
      const got = outputs.map((k) => store.getNodeAttributes(k).type);
      if (
        got.length !== outTypes.length ||
        got.some((t, i) => t.dtype !== outTypes[i].dtype || !shapeEq(t.shape, outTypes[i].shape))
      )
        l.err(
          `returns (${got.map(formatType).join(", ")}) but the signature says (${outTypes.map(formatType).join(", ")})`,
        );
    } else if (first.t === "val") {
      parseNode(l, first.s, store, parseComment(com));
    } else l.err("expected '%name = op(...)', 'dim', 'return' or '}'");
  }
  fail("ir", where(), "missing closing '}'");
}

function parseNode(
  l: Line,
  key: string,
  store: ReturnType<typeof newNodeStore>,
  c: { origin?: string; loc?: string },
): void {
  if (store.hasNode(key)) l.err(`%${key} defined twice`);
  l.punct("=");
  const op = l.next("an op name");
  if (op.t !== "word" || !isOpName(op.s)) l.err(`unknown op ${op.t === "word" ? op.s : "?"}`);
  const opName: OpName = op.s;
  l.punct("(");
  const args: string[] = [];
  while (!l.isPunct(")")) {
    const a = l.val();
    if (!store.hasNode(a)) l.err(`%${a} is used before it is defined`);
    args.push(a);
    if (!l.isPunct(")")) l.punct(",");
  }
  l.punct(")");
  const schema = (OPS[opName] as OpDecl<OpName>).attrs as Readonly<Record<string, AttrKind>>;
  const attrs: Record<string, unknown> = {};
  if (l.isPunct("{")) {
    l.punct("{");
    while (!l.isPunct("}")) {
      const k = l.next("an attribute name");
      if (k.t !== "word" || !(k.s in schema))
        l.err(`${opName} has no attribute ${k.t === "word" ? k.s : "?"}`);
      l.punct("=");
      attrs[k.s] = l.attr(schema[k.s], k.s);
      if (!l.isPunct("}")) l.punct(",");
    }
    l.punct("}");
  }
  for (const k of Object.keys(schema)) if (!(k in attrs)) l.err(`${opName} needs attribute ${k}`);
  l.punct(":");
  const type = l.type();
  if (!l.done()) l.err("unexpected text after the type");
  const ins = args.map((a) => store.getNodeAttributes(a).type);
  const want = inferType(opName, attrs as AnyAttrs, ins, type);
  if (typeof want === "string") l.err(`${opName}: ${want}`);
  if (want.dtype !== type.dtype || !shapeEq(want.shape, type.shape))
    l.err(`recorded type ${formatType(type)} but ${opName} gives ${formatType(want)}`);
  const data = {
    op: opName,
    attrs,
    type,
    loc: c.loc ?? l.where,
    ...(c.origin ? { origin: c.origin } : {}),
  } as NodeData;
  addNode(store, key, data, args);
}
