/** What the CLI loads before it knows what to do: not ts-morph (~0.7 s), which only emitting and
 *  transpiling a module needs (compiler/codegen/ts/ts-morph.ts). */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { expect, it } from "vitest";
import { REPO } from "../helpers/cli.ts";

it("imports cli/main.ts without loading ts-morph", () => {
  const main = pathToFileURL(join(REPO, "cli", "main.ts")).href;
  const script = [
    `import { createRequire } from "node:module";`,
    `await import(${JSON.stringify(main)});`,
    `const cache = createRequire(${JSON.stringify(main)}).cache;`,
    `console.log(JSON.stringify(Object.keys(cache).filter((k) => /[\\\\/]node_modules[\\\\/](ts-morph|typescript)[\\\\/]/.test(k))));`,
  ].join("\n");
  const r = spawnSync(
    process.execPath,
    ["--import", "tsx/esm", "--input-type=module", "-e", script],
    { encoding: "utf8", cwd: REPO },
  );
  expect(r.stderr).toBe("");
  expect(JSON.parse(r.stdout)).toEqual([]);
}, 60_000);
