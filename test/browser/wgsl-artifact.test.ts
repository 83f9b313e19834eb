/** The WGSL artifact in a browser: `kiln compile test/fixtures/gpt2-tiny --target wgsl` served,
 *  with the checkpoint's model.safetensors, from a node:http server on 127.0.0.1, and a page in
 *  headless Chromium (Debian's, driven by playwright-core; WebGPU there runs on SwiftShader) that
 *  imports ./model.js, gets a device from navigator.gpu (a plain `requestDevice()`: WebGPU's
 *  default limits, which the artifact is compiled for), fetches the weights as bytes and runs
 *  forward and greedy generate. The logits match the PyTorch fixture within 1e-4 with the same
 *  argmax, and the same model.js run in Node on the test device (test/helpers/gpu.ts) within 1e-4;
 *  the tokens are the fixture's; a path instead of bytes is a KilnError there, not a crash.
 *
 *  Skipped, with a visible message, only when /usr/bin/chromium is missing or its page has no
 *  WebGPU adapter — and never with KILN_REQUIRE_GPU=1 (CI), which fails instead. */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO, kiln, tempDir } from "../helpers/cli.ts";
import { testGpu } from "../helpers/gpu.ts";

const CHROMIUM = "/usr/bin/chromium";
const CKPT = join(REPO, "test", "fixtures", "gpt2-tiny");
const REQUIRE = process.env.KILN_REQUIRE_GPU === "1";

interface Expected {
  forward: { tokens: number[]; logits: number[][] }[];
  generate: { tokens: number[]; max_new_tokens: number; new_tokens: number[] }[];
}
const expected = JSON.parse(readFileSync(join(CKPT, "expected.json"), "utf8")) as Expected;

/** What the page reports. */
interface PageResult {
  adapter: { vendor: string; architecture: string; device: string; description: string };
  forward: { rows: number; cols: number; logits: number[] }[];
  generate: number[];
  fromPath: { name: string; kind: string; message: string } | null;
  /** Milliseconds in the page: load (fetch, checks, pipelines, upload), forward, generate. */
  ms: Record<string, number>;
}

/** Serves exactly these files (URL path → file), nothing else. */
function serve(files: ReadonlyMap<string, string>): Promise<Server> {
  const types: Record<string, string> = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
  };
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const file = files.get(path);
    if (file === undefined) {
      res.writeHead(404).end();
      return;
    }
    const ext = /\.[a-z]+$/.exec(file)?.[0] ?? "";
    res.writeHead(200, { "content-type": types[ext] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

/** The page: a module script that imports the artifact statically and gives the test two
 *  functions. Plain JavaScript in a string, so the test's transform cannot touch it. */
const INDEX = `<!doctype html>
<meta charset="utf-8">
<title>kiln wgsl artifact</title>
<script type="module">
import { load } from "./model.js";

/** WebGPU's adapter, or why there is none. */
window.kilnAdapter = async () => {
  if (!navigator.gpu) return "navigator.gpu is undefined";
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return "navigator.gpu.requestAdapter() gave no adapter";
  const i = adapter.info;
  return { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description };
};

/** The artifact on navigator.gpu's device (default limits), the weights fetched as bytes. */
window.kilnRun = async (cases) => {
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter.requestDevice();
  const ms = {};
  let t = performance.now();
  const lap = (what) => { const now = performance.now(); ms[what] = Math.round(now - t); t = now; };
  const bytes = await (await fetch("./model.safetensors")).arrayBuffer();
  const model = await load(device, bytes);
  lap("load");
  const forward = [];
  for (const tokens of cases.forward) {
    const r = await model.forward({ tokens });
    forward.push({ rows: r.rows, cols: r.cols, logits: Array.from(r.logits) });
  }
  lap("forward");
  const generate = await model.generate(cases.generate);
  lap("generate");
  let fromPath = null;
  try {
    await load(device, "ckpt");
  } catch (e) {
    fromPath = { name: e.name, kind: e.kind, message: e.message };
  }
  model.destroy();
  device.destroy();
  return { forward, generate, fromPath, ms };
};
window.kilnReady = true;
</script>
`;

const argmax = (row: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
};

describe("the wgsl artifact in headless Chromium", () => {
  let skip: string | undefined;
  let out: string;
  let server: Server | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let result: PageResult;
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      if (REQUIRE) throw new Error(`${CHROMIUM} is missing (KILN_REQUIRE_GPU=1)`);
      skip = `${CHROMIUM} is missing (scripts/setup-webgpu.sh installs it)`;
      return;
    }
    let t = performance.now();
    const lap = (what: string) => {
      const now = performance.now();
      timings[what] = Math.round(now - t);
      t = now;
    };
    out = join(tempDir(), "artifact");
    const r = await kiln("compile", CKPT, "--target", "wgsl", "--out", out);
    if (r.code !== 0) throw new Error(r.stderr);
    lap("compile");
    const files = new Map<string, string>([
      ["/model.safetensors", join(CKPT, "model.safetensors")],
    ]);
    for (const f of ["model.js", "manifest.json"]) files.set(`/${f}`, join(out, f));
    const index = join(tempDir(), "index.html");
    writeFileSync(index, INDEX);
    files.set("/", index);
    server = await serve(files);
    const { port } = server.address() as AddressInfo;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--enable-unsafe-webgpu"],
    });
    lap("launch");
    page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${port}/`);
    await page
      .waitForFunction("window.kilnReady === true", undefined, { timeout: 60_000 })
      .catch((e: Error) => {
        throw new Error(
          `the page did not load model.js: ${e.message}\npage errors: ${errors.join("\n")}`,
        );
      });
    const adapter = (await page.evaluate("window.kilnAdapter()")) as PageResult["adapter"] | string;
    if (typeof adapter === "string") {
      if (REQUIRE)
        throw new Error(`Chromium has no WebGPU adapter (KILN_REQUIRE_GPU=1): ${adapter}`);
      skip = `Chromium has no WebGPU adapter: ${adapter}`;
      return;
    }
    lap("page");
    const g = expected.generate[0];
    const cases = {
      forward: expected.forward.map((c) => c.tokens),
      generate: { tokens: g.tokens, maxNewTokens: g.max_new_tokens },
    };
    const run = await (
      page.evaluate(`window.kilnRun(${JSON.stringify(cases)})`) as Promise<
        Omit<PageResult, "adapter">
      >
    ).catch((e: Error) => {
      throw new Error(`${e.message}\npage errors: ${errors.join("\n")}`);
    });
    lap("in the page");
    result = { adapter, ...run };
    process.stderr.write(
      `\nwgsl artifact in Chromium: adapter ${JSON.stringify(adapter)}; ms ${JSON.stringify(timings)}, in the page ${JSON.stringify(run.ms)}\n`,
    );
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((ok) => (server ? server.close(ok) : ok(undefined)));
    if (skip) process.stderr.write(`\n*** browser test skipped: ${skip}\n\n`);
  });

  it("forward in the page: the PyTorch fixture's logits within 1e-4, the same argmax", (ctx) => {
    if (skip) return ctx.skip();
    expect(result.forward).toHaveLength(expected.forward.length);
    result.forward.forEach((r, i) => {
      const want = expected.forward[i].logits;
      expect([r.rows, r.cols]).toEqual([want.length, want[0].length]);
      want.forEach((row, t) => {
        const got = r.logits.slice(t * r.cols, (t + 1) * r.cols);
        got.forEach((v, j) => expect(Math.abs(v - row[j])).toBeLessThan(1e-4));
        expect(argmax(got)).toBe(argmax(row));
      });
    });
  });

  it("the same as model.js in Node on the test device, within 1e-4", async (ctx) => {
    if (skip) return ctx.skip();
    const gpu = await testGpu();
    if (!gpu) return ctx.skip();
    const mod = (await import(pathToFileURL(join(out, "model.js")).href)) as {
      load(
        device: GPUDevice,
        source: string,
      ): Promise<{
        forward(i: { tokens: number[] }): Promise<{ logits: Float32Array }>;
        destroy(): void;
      }>;
    };
    const model = await mod.load(gpu.device, CKPT);
    for (const [i, c] of expected.forward.entries()) {
      const node = (await model.forward({ tokens: c.tokens })).logits;
      const page = result.forward[i].logits;
      expect(page).toHaveLength(node.length);
      node.forEach((v, j) => expect(Math.abs(v - page[j])).toBeLessThan(1e-4));
    }
    model.destroy();
  }, 120_000);

  it("greedy generate in the page gives the fixture's tokens", (ctx) => {
    if (skip) return ctx.skip();
    expect(result.generate).toEqual(expected.generate[0].new_tokens);
  });

  it("a path in a browser is a KilnError that says to pass the bytes", (ctx) => {
    if (skip) return ctx.skip();
    expect(result.fromPath).toEqual({
      name: "KilnError",
      kind: "usage",
      message: expect.stringMatching(/^load: a path needs Node's file system/),
    });
  });
});
