/** kiln's command line: thin over the library. Every foreseen failure is a KilnError, printed as
 *  `error[kind]: where: detail` with a non-zero exit and no stack trace. */
import { KilnError } from "../compiler/errors.ts";
import type { IO } from "./io.ts";

export type { IO };
import { bench, benchHelp } from "./commands/bench.ts";
import { compile, compileHelp } from "./commands/compile.ts";
import { forward, forwardHelp } from "./commands/forward.ts";
import { generate, generateHelp } from "./commands/generate.ts";
import { inspect, inspectHelp } from "./commands/inspect.ts";

const USAGE = `kiln — a compiler for transformer models

Usage: kiln <command> [options]     (kiln <command> --help for its options)

  inspect <model|checkpoint>   print a model's graph as text IR
  forward <checkpoint>         run one forward pass, print logits
  generate <checkpoint>        continue a token sequence
  compile <model|checkpoint>   emit a standalone artifact (kernels + loader)
  bench                        measure kiln against a peer (tfjs-backend-cpu)

A checkpoint is a folder with config.json + model.safetensors (Hugging Face GPT-2, or the
PyTorch tutorial's Seq2SeqTransformer). A model is a DSL file such as models/gpt2.ts.
`;

type Command = { help: string; run: (argv: readonly string[], io: IO) => string | Promise<string> };

const COMMANDS: Readonly<Record<string, Command>> = {
  inspect: { help: inspectHelp, run: inspect },
  forward: { help: forwardHelp, run: forward },
  generate: { help: generateHelp, run: generate },
  compile: { help: compileHelp, run: compile },
  bench: { help: benchHelp, run: bench },
};

const NOT_BUILT = new Set<string>();

const PROCESS_IO: IO = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
};

/** Runs one command line; returns the exit code. */
export async function main(argv: readonly string[], io: IO = PROCESS_IO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    io.out(USAGE);
    return name === undefined ? 2 : 0;
  }
  try {
    if (NOT_BUILT.has(name))
      throw new KilnError("not-built", `kiln ${name}`, "this command is not built yet");
    const cmd = Object.prototype.hasOwnProperty.call(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!cmd)
      throw new KilnError("usage", "kiln", `unknown command ${JSON.stringify(name)}\n\n${USAGE}`);
    if (rest.includes("--help") || rest.includes("-h")) {
      io.out(cmd.help);
      return 0;
    }
    io.out(await cmd.run(rest, io));
    return 0;
  } catch (e) {
    if (e instanceof KilnError) {
      io.err(`error[${e.kind}]: ${e.message}\n`);
      return e.kind === "usage" ? 2 : 1;
    }
    const err = e instanceof Error ? e : new Error(String(e));
    io.err(`internal error (a bug in kiln, please report it): ${err.message}\n`);
    if (process.env.KILN_DEBUG) io.err(`${err.stack}\n`);
    else io.err("run with KILN_DEBUG=1 to see where it happened\n");
    return 70;
  }
}
