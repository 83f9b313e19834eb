/** The emitted module as source: it type-checks under strict mode with no `any` (checked in
 *  memory with the TypeScript compiler, together with the runtime's view of its interface), it
 *  imports nothing, it is deterministic, every kernel carries its IR line, prettier formats it,
 *  and user names — hostile ones included — change nothing but comments and string literals. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Project, SyntaxKind, ts } from "ts-morph";
import { describe, expect, it } from "vitest";
import { emitModule, formatModule } from "../../../../compiler/codegen/ts/module.ts";
import { ModelBuilder } from "../../../../compiler/dsl/builder.ts";
import { layerNorm, linear, selfAttention } from "../../../../compiler/dsl/layers.ts";
import * as p from "../../../../compiler/dsl/primitives.ts";
import type { Graph } from "../../../../compiler/ir/graph.ts";
import { ndarray } from "../../../../compiler/ir/ndarray.ts";
import { lower } from "../../../../compiler/lower/lower.ts";
import type { Program } from "../../../../compiler/lower/program.ts";
import { runPipeline } from "../../../../compiler/passes/pipeline.ts";
import { gpt2Graph, seq2seqGraph } from "../../lower/models.ts";
import { compile, tensors } from "./harness.ts";

const ROOT = join(import.meta.dirname, "..", "..", "..", "..");
/** The runtime's view of a module, and the file of module types it imports. */
const RUNTIME_FILES = ["runtime/cpu/module.ts", "compiler/codegen/ts/module-types.ts"].map(
  (path) => ({ path: `/${path}`, text: readFileSync(join(ROOT, path), "utf8") }),
);

/** Diagnostics of the module under strict mode (ES2022, no DOM, no Node), and of a consumer that
 *  assigns it to the runtime's CompiledModule type. */
function typeCheck(source: string): string[] {
  const project = new Project({
    useInMemoryFileSystem: true,
    compilerOptions: {
      strict: true,
      noImplicitReturns: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      lib: ["lib.es2022.d.ts"],
      types: [],
      noEmit: true,
    },
  });
  const file = project.createSourceFile("/module.ts", source);
  for (const f of RUNTIME_FILES) project.createSourceFile(f.path, f.text);
  project.createSourceFile(
    "/consumer.ts",
    `import * as generated from "./module";
import type { CompiledModule } from "./runtime/cpu/module.ts";
export const m: CompiledModule = generated;`,
  );
  const anys = file
    .getDescendantsOfKind(SyntaxKind.AnyKeyword)
    .map((n) => `any at ${n.getStartLineNumber()}`);
  return [
    ...anys,
    ...project
      .getPreEmitDiagnostics()
      .map(
        (d) =>
          `${d.getSourceFile()?.getBaseName()}:${d.getLineNumber()}: ${ts.flattenDiagnosticMessageText(d.compilerObject.messageText, " ")}`,
      ),
  ];
}

/** The source's tokens with comments dropped and string literals emptied. */
function codeTokens(source: string): string[] {
  const scanner = ts.createScanner(
    ts.ScriptTarget.ES2022,
    true,
    ts.LanguageVariant.Standard,
    source,
  );
  const out: string[] = [];
  for (let k = scanner.scan(); k !== ts.SyntaxKind.EndOfFileToken; k = scanner.scan()) {
    if (k === ts.SyntaxKind.StringLiteral || k === ts.SyntaxKind.NoSubstitutionTemplateLiteral)
      out.push('""');
    else if (k === ts.SyntaxKind.SlashToken || k === ts.SyntaxKind.SlashEqualsToken)
      out.push(scanner.getTokenText());
    else out.push(scanner.getTokenText());
  }
  return out;
}

const PROGRAMS: readonly (readonly [string, () => { g: Graph; p: Program }])[] = [
  ["gpt2", () => opt(gpt2Graph())],
  ["seq2seq", () => opt(seq2seqGraph())],
  ["gpt2 with no passes", () => ({ g: gpt2Graph(), p: lower(gpt2Graph()) })],
  ["seq2seq with no passes", () => ({ g: seq2seqGraph(), p: lower(seq2seqGraph()) })],
];

function opt(g: Graph) {
  const o = runPipeline(g).graph;
  return { g: o, p: lower(o) };
}

describe.each(PROGRAMS)("%s", (_name, make) => {
  const { g, p: program } = make();
  const source = emitModule(program, { graph: g });

  it("type-checks under strict mode with no any, as the runtime's CompiledModule", () => {
    expect(typeCheck(source)).toEqual([]);
  });

  it("is self-contained: no import, require or dynamic code", () => {
    expect(source).not.toMatch(/^\s*import\b|\brequire\(|\bimport\(|\beval\(|new Function/m);
  });

  it("is deterministic: the same program, lowered again, gives the same text", () => {
    const again = make();
    expect(emitModule(again.p, { graph: again.g })).toBe(source);
  });

  it("runs every kernel by a function whose header has its IR line: its own, or one it shares", () => {
    const declared = [...source.matchAll(/^export function (k\w+)\(/gm)].map((m) => m[1]);
    expect(new Set(declared).size).toBe(declared.length);
    for (const k of program.kernels) {
      const line = `${k.name} (${k.family}, ${k.phase}): %${k.node} = ${k.op}(`;
      const at = source.indexOf(line);
      expect(at, k.name).toBeGreaterThan(0);
      // the header the line is in belongs to the next function declared
      const fn = /^export function (k\w+)\(/m.exec(source.slice(at))?.[1];
      expect(fn, k.name).toBeDefined();
      expect(source.slice(at, source.indexOf(`export function ${fn}(`))).not.toMatch(/^}/m);
      // the session calls it (directly, or through the threads with its name)
      expect(source).toMatch(new RegExp(`\\b${fn}\\(|threads\\.matmul\\(${fn},`));
    }
  });
});

describe("kernels with the same code", () => {
  it("share one function: a two-layer GPT-2 emits the second layer's kernels as calls", () => {
    const one = opt(gpt2Graph(1));
    const two = opt(gpt2Graph(2));
    const functions = (src: string) => [...src.matchAll(/^export function (k\w+)\(/gm)].length;
    const src1 = emitModule(one.p, { graph: one.g });
    const src2 = emitModule(two.p, { graph: two.g });
    expect(two.p.kernels.length).toBeGreaterThan(one.p.kernels.length);
    // the second layer adds kernels, not functions
    expect(functions(src2)).toBe(functions(src1));
    expect(functions(src2)).toBeLessThan(two.p.kernels.length);
    expect(src2).toMatch(/the same function runs \d+ more kernel\(s\):/);
  });

  it("keep their own functions when their code differs: seq2seq's self- and cross-attention", () => {
    const { g, p: program } = opt(seq2seqGraph());
    const src = emitModule(program, { graph: g });
    const attention = (re: RegExp) => [...src.matchAll(re)].length;
    // self-attention (causal) and cross-attention are different code: at least two functions
    expect(attention(/^export function k\w*attention\w*\(/gm)).toBeGreaterThanOrEqual(2);
  });
});

it("formats with prettier and still type-checks", async () => {
  const { g, p: program } = opt(gpt2Graph(1));
  const formatted = await formatModule(emitModule(program, { graph: g }));
  expect(typeCheck(formatted)).toEqual([]);
  expect(await formatModule(formatted)).toBe(formatted);
});

/** A small model (embedding, layer norm, self-attention, a linear head) with names of one's
 *  choosing for the model, input, dim, bound and params. */
function tinyModel(n: {
  model: string;
  input: string;
  dim: string;
  why: string;
  params: readonly string[];
}): Graph {
  const m = new ModelBuilder(n.model);
  m.bound(n.dim, 8, n.why);
  const tokens = m.input(n.input, "i32", [n.dim]);
  const w = (i: number, shape: number[]) => m.param(n.params[i], shape);
  let x = p.add(p.gather(w(0, [11, 4]), tokens), p.gather(w(1, [8, 4]), p.range(tokens, n.dim)));
  x = layerNorm(x, { weight: w(2, [4]), bias: w(3, [4]), eps: 1e-5 });
  x = p.add(
    x,
    selfAttention(
      x,
      {
        qkv: { weight: w(4, [4, 12]), bias: w(5, [12]), layout: "in_out" },
        out: { weight: w(6, [4, 4]), layout: "in_out" },
        heads: 2,
      },
      { causal: true },
    ),
  );
  return m.finish([linear(x, { weight: w(0, [11, 4]), layout: "out_in" })]);
}

const PLAIN = {
  model: "tiny",
  input: "tokens",
  dim: "T",
  why: "the context",
  params: ["w0", "w1", "w2", "w3", "w4", "w5", "w6"],
};
const HOSTILE = {
  model: "a*/;globalThis.pwned=1;/*",
  input: "constructor",
  dim: "T", // the lowering gives T its meaning (the sequence a step extends)
  why: "*/ globalThis.pwned = 2; /* \u2028 `${x}`",
  params: [
    "a*/;globalThis.pwned=1;/*",
    "`${globalThis.pwned=3}`",
    "line\u2028sep\u2029arator\nnew\rline",
    "x".repeat(1 << 20),
    "constructor",
    "class",
    '"); globalThis.pwned = 4; ("\\',
  ],
};

/** Every string a Program carries made hostile: buffer nodes and names, kernel nodes, covers. */
function hostileProgram(pr: Program): Program {
  const evil = (s: string) => `${s}*/globalThis.pwned=5;/*\u2028\u2029\r\n\`\${1}\``;
  return {
    ...pr,
    name: evil(pr.name),
    buffers: pr.buffers.map((b) => ({ ...b, node: evil(b.node) })),
    kernels: pr.kernels.map((k) => ({ ...k, node: evil(k.node), covers: k.covers.map(evil) })),
  };
}

describe("user names", () => {
  const plain = lower(runPipeline(tinyModel(PLAIN)).graph);
  const hostile = lower(runPipeline(tinyModel(HOSTILE)).graph);
  const plainSource = emitModule(plain);
  const hostileSource = emitModule(hostile);

  it("change nothing but comments and string literals", () => {
    expect(hostileSource).not.toBe(plainSource);
    expect(codeTokens(hostileSource)).toEqual(codeTokens(plainSource));
    const evil = hostileProgram(plain);
    expect(codeTokens(emitModule(evil))).toEqual(codeTokens(plainSource));
  });

  it("leave the module type-checking", () => {
    expect(typeCheck(hostileSource)).toEqual([]);
    expect(typeCheck(emitModule(hostileProgram(plain)))).toEqual([]);
  });

  it("reach the running module only as data: nothing they spell runs", () => {
    const g = globalThis as { pwned?: unknown };
    for (const [pr, src] of [
      [hostile, hostileSource],
      [hostileProgram(plain), emitModule(hostileProgram(plain))],
    ] as const) {
      const m = compile(pr);
      expect(m.model.params.map((x) => x.name)).toEqual(
        pr.buffers.filter((b) => b.role === "param").map((b) => b.name),
      );
      const weights = new Map(
        pr.buffers
          .filter((b) => b.role === "param")
          .map((b) => [
            b.name!,
            new Float32Array((b.shape as number[]).reduce((a, c) => a * c, 1)).fill(0.5),
          ]),
      );
      const s = m.createSession((n) => weights.get(n));
      const out = s.run(
        tensors(m, new Map([[pr.buffers[pr.inputs[0]].name!, ndarray([3], [1, 2, 3])]])),
      );
      expect(out[0].shape).toEqual([3, 11]);
      expect(src.length).toBeGreaterThan(0);
    }
    expect(g.pwned).toBeUndefined();
  });
});
