/** A model definition: a name, a config with defaults, and a build function that declares inputs
 *  and params and returns the outputs. `kiln inspect my-model.ts` imports a file whose default
 *  export is one of these. */
import { fail } from "../errors.ts";
import type { Graph } from "../ir/graph.ts";
import { ModelBuilder, type Tensor } from "./builder.ts";

export type ConfigValue = number | string | boolean;
export type Config = { readonly [key: string]: ConfigValue };

export interface ModelDef<C extends Config> {
  readonly kind: "kiln-model";
  readonly name: string;
  readonly defaults: C;
  readonly build: (m: ModelBuilder, c: C) => Tensor | readonly Tensor[];
}

export function defineModel<C extends Config>(def: Omit<ModelDef<C>, "kind">): ModelDef<C> {
  return { kind: "kiln-model", ...def };
}

export function isModelDef(x: unknown): x is ModelDef<Config> {
  return typeof x === "object" && x !== null && (x as { kind?: unknown }).kind === "kiln-model";
}

export function buildGraph<C extends Config>(def: ModelDef<C>, config: Partial<C> = {}): Graph {
  const m = new ModelBuilder(def.name);
  const out = def.build(m, { ...def.defaults, ...config });
  return m.finish(Array.isArray(out) ? out : [out as Tensor]);
}

/** Applies `key=value` overrides, parsing each value as the type of its default. */
export function overrideConfig<C extends Config>(
  defaults: C,
  pairs: readonly string[],
  where: string,
): Partial<C> {
  const out: Record<string, ConfigValue> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    const key = eq < 0 ? pair : pair.slice(0, eq);
    const raw = eq < 0 ? "" : pair.slice(eq + 1);
    if (eq < 0 || !Object.prototype.hasOwnProperty.call(defaults, key))
      fail(
        "usage",
        where,
        `--config ${pair}: expected key=value with key one of ${Object.keys(defaults).join(", ")}`,
      );
    const d = defaults[key];
    if (typeof d === "number") {
      const v = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(v))
        fail("usage", where, `--config ${key}: ${JSON.stringify(raw)} is not a number`);
      out[key] = v;
    } else if (typeof d === "boolean") {
      if (raw !== "true" && raw !== "false")
        fail("usage", where, `--config ${key}: expected true or false`);
      out[key] = raw === "true";
    } else out[key] = raw;
  }
  return out as Partial<C>;
}
