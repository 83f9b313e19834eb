/** The cache key of a generated module, computed from what its text is a function of, so that a
 *  module made before is found without emitting it again (emitting a GPT-2-small module takes
 *  seconds and ~100 MB of ts-morph's memory, on top of the weights).
 *
 *  emitModule is deterministic: the text is a function of the Program, the EmitOptions and the
 *  compiler's code. The key hashes all three: the Program and the option graphs written out
 *  whole (every field of every node and edge, Maps and Sets as entries, non-finite numbers and
 *  -0 spelled out, undefined kept apart from absent), every file under compiler/, and the
 *  installed version of each dependency in package.json (ts-morph assembles the text). A value it cannot write exactly (a function, an
 *  object of an unknown class) gives no key: the caller then emits, as without a cache. */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, relative } from "node:path";
import type { Graph, NodeStore } from "../../compiler/ir/graph.ts";
import type { Program } from "../../compiler/lower/program.ts";

const KEY_VERSION = "kiln-ts-module-key-1";
const COMPILER = join(import.meta.dirname, "..", "..", "compiler");

let fingerprint: string | undefined;

/** Every file under compiler/ (its path and bytes) and the dependencies' versions, hashed once a
 *  process. */
function compilerFingerprint(): string {
  if (fingerprint !== undefined) return fingerprint;
  const h = createHash("sha256");
  const walk = (dir: string): void => {
    const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (e.isFile()) h.update(`${relative(COMPILER, path)}\0`).update(readFileSync(path));
    }
  };
  walk(COMPILER);
  for (const [name, version] of dependencyVersions()) h.update(`${name}@${version}\0`);
  return (fingerprint = h.digest("hex"));
}

/** The installed version of each of kiln's dependencies (ts-morph assembles the text, graphology
 *  orders the nodes). */
function dependencyVersions(): [string, string][] {
  const require = createRequire(import.meta.url);
  const manifest = (path: string): Record<string, unknown> => {
    const m: unknown = require(path);
    return typeof m === "object" && m !== null ? (m as Record<string, unknown>) : {};
  };
  const deps = manifest(join(COMPILER, "..", "package.json")).dependencies;
  const names = typeof deps === "object" && deps !== null ? Object.keys(deps).sort() : [];
  return names.map((name) => {
    try {
      return [name, String(manifest(`${name}/package.json`).version)];
    } catch {
      return [name, "not installed"];
    }
  });
}

class Unkeyable extends Error {}

/** A graphology graph: written as its nodes and edges with their attributes, in order. An
 *  edge's key is left out: graphology makes one up per instance, and emitModule never reads it. */
function isGraphStore(v: object): v is NodeStore {
  return "forEachNode" in v && typeof v.forEachNode === "function" && "forEachEdge" in v;
}

function graphEntries(g: NodeStore): unknown {
  const nodes: unknown[] = [];
  g.forEachNode((key, attrs) => nodes.push([key, attrs]));
  const edges: unknown[] = [];
  g.forEachEdge((_key, attrs, source, target) => edges.push([source, target, attrs]));
  return { $graph: { nodes, edges } };
}

/** JSON.stringify's replacer: the exact spelling of values JSON would lose or merge. */
function exact(this: unknown, key: string): unknown {
  // `this[key]`: the value before JSON.stringify called its toJSON, if it has one (graphology's
  // graphs and Dates do): a class is judged by itself, not by what it makes of itself.
  const v: unknown = (this as Record<string, unknown>)[key];
  switch (typeof v) {
    case "number":
      return Number.isFinite(v) && !Object.is(v, -0)
        ? v
        : { $number: Object.is(v, -0) ? "-0" : String(v) };
    case "bigint":
      return { $bigint: v.toString() };
    case "undefined":
      return { $undefined: true };
    case "function":
    case "symbol":
      throw new Unkeyable(typeof v);
    case "string":
    case "boolean":
      return v;
    case "object": {
      if (v === null || Array.isArray(v)) return v;
      if (v instanceof Map) return { $map: [...v] };
      if (v instanceof Set) return { $set: [...v] };
      if (ArrayBuffer.isView(v) && !(v instanceof DataView))
        return {
          $typed: v.constructor.name,
          values: Array.from(v as unknown as ArrayLike<number>),
        };
      if (isGraphStore(v)) return graphEntries(v);
      const proto: unknown = Object.getPrototypeOf(v);
      if (proto === Object.prototype || proto === null) return v;
      throw new Unkeyable(
        `an object of class ${String((proto as { constructor?: { name?: string } }).constructor?.name)}`,
      );
    }
  }
}

/** The key of the module emitModule(program, { graph, source }) makes; undefined when some part
 *  cannot be written exactly. */
export function moduleKey(
  program: Program,
  options: { readonly graph: Graph; readonly source: Graph },
): string | undefined {
  let text: string;
  try {
    text = JSON.stringify({ program, graph: options.graph, source: options.source }, exact);
  } catch (e) {
    if (e instanceof Unkeyable) return undefined;
    throw e;
  }
  return createHash("sha256")
    .update(`${KEY_VERSION}\0${compilerFingerprint()}\0`)
    .update(text)
    .digest("hex");
}
