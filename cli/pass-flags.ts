/** The optimizer's flags, shared by inspect, forward and generate:
 *  `--passes a,b,…` (that list, in that order), `--no-opt` (no passes), `--print-after-all`,
 *  `--print-after <pass>` (the text IR after that pass; repeatable). */
import { fail } from "../compiler/errors.ts";
import type { Graph } from "../compiler/ir/graph.ts";
import { printGraph } from "../compiler/ir/print.ts";
import type { Pass } from "../compiler/passes/pass.ts";
import { DEFAULT_PIPELINE, PASSES, passesByName } from "../compiler/passes/pipeline.ts";
import type { Options } from "./args.ts";

export const PASS_OPTIONS = {
  passes: { type: "string" },
  "no-opt": { type: "boolean" },
  "print-after-all": { type: "boolean" },
  "print-after": { type: "string", multiple: true },
} as const satisfies Options;

export const PASS_HELP = `  --passes a,b,…        run these passes in this order (default: the whole pipeline)
  --no-opt              run no passes
  --print-after-all     print the text IR after every pass
  --print-after PASS    print the text IR after PASS (repeatable)
`;

export interface PassFlags {
  readonly passes: readonly Pass[];
  readonly afterPass?: (name: string, g: Graph) => void;
}

interface PassValues {
  passes?: string;
  "no-opt"?: boolean;
  "print-after-all"?: boolean;
  "print-after"?: string[];
}

/** Reads the flags; IR printed after passes goes to `print`. */
export function passFlags(v: PassValues, print: (s: string) => void): PassFlags {
  if (v.passes !== undefined && v["no-opt"])
    fail("usage", "--no-opt", "give either --passes or --no-opt");
  const passes = v["no-opt"]
    ? []
    : v.passes !== undefined
      ? passesByName(
          v.passes
            .split(",")
            .map((s) => s.trim())
            .filter((s) => s !== ""),
        )
      : DEFAULT_PIPELINE;
  const after = new Set(v["print-after"] ?? []);
  for (const name of after)
    if (!PASSES.has(name))
      fail(
        "usage",
        "--print-after",
        `unknown pass ${JSON.stringify(name)} (passes: ${[...PASSES.keys()].join(", ")})`,
      );
  const all = v["print-after-all"] ?? false;
  if (!all && after.size === 0) return { passes };
  return {
    passes,
    afterPass: (name, g) => {
      if (all || after.has(name))
        print(`// after ${name}: ${g.nodes.order} nodes\n${printGraph(g)}\n`);
    },
  };
}
