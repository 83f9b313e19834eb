/** The model builder: a model file's DSL calls append typed nodes here. Every node is type-checked
 *  the moment it is made; a failure is a KilnError of kind "dsl" naming the user's file:line, the
 *  op and the shapes, e.g. `models/gpt2.ts:42: matmul: [T,768] × [512,768]: inner dims differ`. */
import { fail } from "../errors.ts";
import type { DType } from "../ir/dtype.ts";
import {
  addNode,
  newNodeStore,
  type DimBound,
  type Graph,
  type NodeData,
  type NodeStore,
} from "../ir/graph.ts";
import { inferType } from "../ir/infer.ts";
import { OPS, type AttrKind, type Attrs, type OpDecl, type OpName } from "../ir/ops.ts";
import { isDim, isSymbol, formatShape, type Shape, type TensorType } from "../ir/shape.ts";
import { checkAttr, verify } from "../ir/verify.ts";
import { callSite } from "./call-site.ts";

/** A value in the model being built. */
export interface Tensor {
  readonly builder: ModelBuilder;
  readonly key: string;
  readonly type: TensorType;
}

const MAX_KEY = 64;

/** A value name for text IR made from a hint: letters, digits, `_` and `.` only. A long hint keeps
 *  its end, which is the part that tells values apart (`….layers.0.self_attn.out_proj.weight`). */
function sanitize(hint: string): string {
  let s = hint
    .replace(/[^A-Za-z0-9_.]+/g, "_")
    .slice(-MAX_KEY)
    .replace(/^[._]+/, "");
  if (!/^[A-Za-z_]/.test(s)) s = `v${s}`;
  return s;
}

export class ModelBuilder {
  private readonly store: NodeStore = newNodeStore();
  private readonly inputKeys: string[] = [];
  private readonly boundMap = new Map<string, DimBound>();
  private readonly params = new Map<string, Tensor>();

  constructor(readonly name: string) {}

  private freshKey(hint: string): string {
    const base = sanitize(hint);
    if (!this.store.hasNode(base)) return base;
    for (let i = 1; ; i++) if (!this.store.hasNode(`${base}_${i}`)) return `${base}_${i}`;
  }

  /** Adds a node after checking it with the op's type rule. */
  node<O extends OpName>(
    op: O,
    attrs: Attrs[O],
    ins: readonly Tensor[],
    hint: string = op,
    declared?: TensorType,
  ): Tensor {
    const loc = callSite();
    for (const t of ins)
      if (t.builder !== this)
        fail("dsl", loc ?? this.name, `${op}: operand %${t.key} belongs to another model`);
    const schema = (OPS[op] as OpDecl<OpName>).attrs as Readonly<Record<string, AttrKind>>;
    const given = attrs as Readonly<Record<string, unknown>>;
    for (const [name, kind] of Object.entries(schema))
      if (!checkAttr(kind, given[name]))
        fail(
          "dsl",
          loc ?? `model ${this.name}`,
          `${op}: attribute ${name} must be ${kind}, got ${String(given[name])}`,
        );
    const type = inferType(
      op,
      attrs,
      ins.map((t) => t.type),
      declared,
    );
    if (typeof type === "string") fail("dsl", loc ?? `model ${this.name}`, `${op}: ${type}`);
    const key = this.freshKey(hint);
    const data = { op, attrs, type, ...(loc ? { loc } : {}) } as NodeData;
    addNode(
      this.store,
      key,
      data,
      ins.map((t) => t.key),
    );
    return { builder: this, key, type };
  }

  /** A graph input fed at run time. The name is an identifier (it is also the IR value name). */
  input(name: string, dtype: DType, shape: Shape): Tensor {
    const loc = callSite() ?? `model ${this.name}`;
    if (!isSymbol(name))
      fail("dsl", loc, `input: name ${JSON.stringify(name)} must be an identifier`);
    // The name is also the value's key, which text IR reads back as the input's name.
    if (name.length > MAX_KEY)
      fail("dsl", loc, `input: name "${name}" is longer than ${MAX_KEY} characters`);
    if (this.store.hasNode(name)) fail("dsl", loc, `input: name "${name}" is already used`);
    if (!shape.every(isDim)) fail("dsl", loc, `input: bad shape ${formatShape(shape)}`);
    const t = this.node("input", { name }, [], name, { dtype, shape });
    this.inputKeys.push(t.key);
    return t;
  }

  /** A weight, named as in the checkpoint. Declaring the same name twice returns the same value
   *  (tied weights), provided the shapes agree. */
  param(name: string, shape: Shape, dtype: DType = "f32"): Tensor {
    if (!shape.every((d) => typeof d === "number" && isDim(d)))
      fail(
        "dsl",
        callSite() ?? `model ${this.name}`,
        `param "${name}": shape ${formatShape(shape)} must be non-negative integers`,
      );
    const seen = this.params.get(name);
    if (seen) {
      if (formatShape(seen.type.shape) !== formatShape(shape))
        fail(
          "dsl",
          callSite() ?? this.name,
          `param "${name}" declared as ${formatShape(seen.type.shape)} and ${formatShape(shape)}`,
        );
      return seen;
    }
    const t = this.node("param", { name }, [], name, { dtype, shape });
    this.params.set(name, t);
    return t;
  }

  /** A scalar constant of x's dtype. */
  scalar(value: number, like: Tensor): Tensor {
    return this.node("const", { value }, [], "c", { dtype: like.type.dtype, shape: [] });
  }

  /** Declares an upper bound on a symbolic dim, checked when inputs are fed. */
  bound(symbol: string, max: number, why: string): void {
    this.boundMap.set(symbol, { max, why });
  }

  /** Declares a bound unless the model already gave one (a layer's implied limit, such as a
   *  positional table's rows, yields to the model's own words for it). */
  impliedBound(symbol: string, max: number, why: string): void {
    const b = this.boundMap.get(symbol);
    if (!b || b.max > max) this.boundMap.set(symbol, { max, why });
  }

  /** Fails with a DSL error at the caller's line unless `ok`. */
  require(ok: boolean, message: string): void {
    if (!ok) fail("dsl", callSite() ?? `model ${this.name}`, message);
  }

  finish(outputs: readonly Tensor[]): Graph {
    for (const t of outputs)
      if (t.builder !== this)
        fail(
          "dsl",
          callSite() ?? `model ${this.name}`,
          `output %${t.key} belongs to another model`,
        );
    return verify({
      name: sanitize(this.name),
      nodes: this.store.copy(),
      inputs: [...this.inputKeys],
      outputs: outputs.map((t) => t.key),
      bounds: new Map(this.boundMap),
    });
  }
}
