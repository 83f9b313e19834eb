/** Command-line parsing shared by the commands: node:util's parseArgs, with every mistake turned
 *  into a usage error that names the flag. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { fail } from "../compiler/errors.ts";

export type Options = NonNullable<ParseArgsConfig["options"]>;

export function parse<O extends Options>(command: string, argv: readonly string[], options: O) {
  try {
    return parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
  } catch (e) {
    return fail(
      "usage",
      `kiln ${command}`,
      `${(e as Error).message.split("\n")[0]} (see kiln ${command} --help)`,
    );
  }
}

export function tokenList(flag: string, s: string | undefined): number[] | undefined {
  if (s === undefined) return undefined;
  const parts = s.split(",").map((p) => p.trim());
  return parts.map((p) => {
    if (!/^-?\d+$/.test(p))
      fail("usage", flag, `expected comma-separated integers like 1,2,3, got ${JSON.stringify(s)}`);
    return Number(p);
  });
}

export function intFlag(
  flag: string,
  s: string | undefined,
  fallback?: number,
): number | undefined {
  if (s === undefined) return fallback;
  if (!/^-?\d+$/.test(s.trim()))
    fail("usage", flag, `expected an integer, got ${JSON.stringify(s)}`);
  return Number(s);
}

export function numberFlag(flag: string, s: string | undefined, fallback: number): number {
  if (s === undefined) return fallback;
  const v = Number(s);
  if (s.trim() === "" || !Number.isFinite(v))
    fail("usage", flag, `expected a number, got ${JSON.stringify(s)}`);
  return v;
}

export function onePositional(
  command: string,
  positionals: readonly string[],
  what: string,
): string {
  if (positionals.length !== 1)
    fail(
      "usage",
      `kiln ${command}`,
      `expected one ${what}, got ${positionals.length} (see kiln ${command} --help)`,
    );
  return positionals[0];
}
