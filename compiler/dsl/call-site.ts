/** Where in the user's file a DSL call was made: the first stack frame outside compiler/dsl/,
 *  as `path:line` relative to the working directory. tsx and vitest both map frames back to the
 *  .ts source, so the line is the one the user wrote. */
import { relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const DSL_DIR = fileURLToPath(new URL(".", import.meta.url));
const FRAME = /\(?((?:file:\/\/)?[^\s()]+?):(\d+):\d+\)?$/;

export function callSite(): string | undefined {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 64;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = limit;
  for (const line of stack.split("\n").slice(1)) {
    const m = FRAME.exec(line.trim());
    if (!m) continue;
    const file = m[1].startsWith("file://") ? fileURLToPath(m[1]) : m[1];
    if (
      file.startsWith(DSL_DIR) ||
      file.startsWith("node:") ||
      file.includes(`${sep}node_modules${sep}`)
    )
      continue;
    const rel = relative(process.cwd(), file);
    return `${rel.startsWith("..") ? file : rel}:${m[2]}`;
  }
  return undefined;
}
