/** Runs the CLI in-process (fast) or as a real `kiln` process (the bin shim, tsx and all). */
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../../cli/main.ts";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function kiln(...argv: string[]): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const code = await main(argv, { out: (s) => (stdout += s), err: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

export const REPO = join(import.meta.dirname, "..", "..");

export function kilnProcess(...argv: string[]): CliResult {
  const r = spawnSync(process.execPath, [join(REPO, "bin", "kiln.mjs"), ...argv], {
    encoding: "utf8",
    cwd: REPO,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function tempDir(prefix = "kiln-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A failure as the CLI must show it: typed, one line of cause, no stack trace. */
export function expectTypedError(
  r: CliResult,
  kind: string,
  ...fragments: (string | RegExp)[]
): void {
  if (r.code === 0)
    throw new Error(`expected a failure, got exit 0 with stdout ${r.stdout.slice(0, 200)}`);
  if (!r.stderr.startsWith(`error[${kind}]: `))
    throw new Error(`expected error[${kind}], got: ${r.stderr}`);
  if (/\n\s+at /.test(r.stderr)) throw new Error(`stack trace in stderr: ${r.stderr}`);
  for (const f of fragments)
    if (typeof f === "string" ? !r.stderr.includes(f) : !f.test(r.stderr))
      throw new Error(`stderr lacks ${String(f)}: ${r.stderr}`);
}
