/** Loading generated modules: transpiled once per distinct source into the cache folder (named by
 *  the source's hash), loaded from there afterwards; a syntax error is reported, not run; a module
 *  cached under a key of its inputs is loaded without emitting it again. */
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import {
  cachedModulePath,
  loadModule,
  loadModuleByKey,
  transpile,
} from "../../../runtime/cpu/load.ts";
import { tempDir } from "../../helpers/cli.ts";

const dirs: string[] = [];
const fresh = () => {
  const d = tempDir("kiln-load-test-");
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const SOURCE = `export const model = { name: "m" };
export function createSession(): { n: number } {
  return { n: 1 };
}
export class RuntimeError extends Error {}
`;

it("writes the module once per source, named by its hash, and loads it from there", () => {
  const dir = fresh();
  const path = cachedModulePath(SOURCE, dir);
  expect(existsSync(path)).toBe(true);
  expect(path).toMatch(/[0-9a-f]{64}\.cjs$/);
  const written = statSync(path).mtimeMs;
  expect(cachedModulePath(SOURCE, dir)).toBe(path);
  expect(statSync(path).mtimeMs).toBe(written);
  expect(cachedModulePath(SOURCE + "\n", dir)).not.toBe(path);
  expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  const m = loadModule(SOURCE, dir);
  expect(m.model.name).toBe("m");
  expect(join(dir, readdirSync(dir)[0]).startsWith(dir)).toBe(true);
});

it("reports a module that does not parse, and one without the expected exports", () => {
  expect(() => transpile("export function (")).toThrow(/does not parse/);
  expect(() => loadModule("export const x = 1;\n", fresh())).toThrow(
    /does not export createSession/,
  );
});

it("finds a module by its key without emitting it again, and emits when there is no key", () => {
  const dir = fresh();
  const key = "a".repeat(64);
  let emitted = 0;
  const emit = () => {
    emitted++;
    return SOURCE;
  };
  expect(loadModuleByKey(key, emit, dir).model.name).toBe("m");
  expect(loadModuleByKey(key, emit, dir).model.name).toBe("m");
  expect(emitted).toBe(1);
  expect(readdirSync(dir)).toEqual([`in-${key}.cjs`]);
  loadModuleByKey(undefined, emit, dir);
  loadModuleByKey(undefined, emit, dir);
  expect(emitted).toBe(3);
});
