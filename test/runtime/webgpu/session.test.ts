/** The WebGPU runtime's own behaviour, on a map-only program (no other kernel family needed):
 *  shader errors are reported with the kernel's name, line and IR line; inputs are checked
 *  before anything runs; a buffer over a tiny profile's binding size runs in chunks; a kernel
 *  that cannot fit a profile fails at compile time with the named limit. */
import { describe, expect, it } from "vitest";
import { WEBGPU_DEFAULTS, withLimits } from "../../../compiler/codegen/wgsl/limits.ts";
import { emitWgsl } from "../../../compiler/codegen/wgsl/program.ts";
import { KilnError } from "../../../compiler/errors.ts";
import { ndarray } from "../../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { lower } from "../../../compiler/lower/lower.ts";
import { loadModel, WebGpuError } from "../../../runtime/webgpu/session.ts";
import { requestGpu } from "../../../runtime/webgpu/device.ts";
import { testGpu } from "../../helpers/gpu.ts";
import { relError, wgslPair } from "../../compiler/codegen/wgsl/harness.ts";

const gpu = await testGpu();

const TEXT = `graph @t(%x: f32[T,5], %y: f32[5]) -> (f32[T,5]) {
  %m = map(%x, %y) {expr="add(mul($0, $1), 1)"} : f32[T,5]
  return %m
}`;
const maxDims = new Map([["T", 64]]);
const program = () => lower(parseGraph(TEXT));

async function errorOf(f: () => Promise<unknown>): Promise<WebGpuError> {
  try {
    await f();
  } catch (e) {
    expect(e).toBeInstanceOf(WebGpuError);
    return e as WebGpuError;
  }
  return expect.fail("no error");
}

describe.skipIf(!gpu)("the WebGPU runtime", () => {
  it("reports a shader the device rejects with the kernel, the line and the IR line", async () => {
    const w = emitWgsl(program(), { maxDims });
    const broken = {
      ...w,
      kernels: w.kernels.map((k) => ({
        ...k,
        source: k.source.replace("let i =", "let i: f32 ="),
      })),
    };
    const e = await errorOf(() => loadModel(gpu!.device, broken, () => undefined));
    expect(e.kind).toBe("device");
    expect(e.where).toBe("k0_map");
    expect(e.detail).toMatch(/does not compile: .* \(line \d+:\d+; k0_map \(map, step\): %m = map/);
  });

  it("checks inputs before running: count, rank, dims, capacity", async () => {
    const p = await wgslPair(gpu!, program(), () => undefined, { maxDims });
    const x = { shape: [3, 5], data: new Float32Array(15) };
    const y = { shape: [5], data: new Float32Array(5) };
    expect((await errorOf(() => p.session.run([x]))).detail).toMatch(/takes 2 input\(s\), got 1/);
    expect(
      (await errorOf(() => p.session.run([x, { shape: [4], data: new Float32Array(4) }]))).where,
    ).toBe('input "y"');
    const long = { shape: [65, 5], data: new Float32Array(325) };
    expect((await errorOf(() => p.session.run([long, y]))).detail).toMatch(
      /exceeds the compiled capacity \(T ≤ 64\)/,
    );
    expect(
      (await errorOf(() => p.session.run([{ shape: [3, 5], data: new Float32Array(2) }, y])))
        .detail,
    ).toMatch(/has 2 values/);
    expect((await errorOf(() => p.session.step([x]))).detail).toMatch(/step before run/);
  });

  it("runs buffers larger than the profile's binding size in chunks", async () => {
    const limits = withLimits(gpu!.limits, { maxStorageBufferBindingSize: 256 });
    const p = await wgslPair(gpu!, program(), () => undefined, { maxDims, limits });
    const x = p.wgsl.buffers[p.program.inputs[0]];
    expect(x.chunks).toBe(5); // 64 × 5 floats in 64-float chunks
    expect(p.wgsl.kernels[0].source).toContain("fn ld_buf1(i: u32) -> f32");
    const xs = ndarray(
      [37, 5],
      Float32Array.from({ length: 185 }, (_, i) => i / 7 - 3),
    );
    const ys = ndarray([5], Float32Array.from([1, -2, 0.5, 3, -1]));
    const { got, want } = await p.run(
      new Map([
        ["x", xs],
        ["y", ys],
      ]),
    );
    expect(relError(got[0], want[0])).toBeLessThanOrEqual(1e-6);
  });

  it("reads back only the last row's argmax when asked (greedy decoding), across chunks", async () => {
    const ys = ndarray([5], Float32Array.from([1, -2, 0.5, 3, -1]));
    for (const binding of [undefined, 24]) {
      // 24 bytes: 6-float chunks, so the last row of 5 straddles two chunks for most T.
      const limits = binding
        ? withLimits(gpu!.limits, { maxStorageBufferBindingSize: binding })
        : undefined;
      const small = new Map([["T", 8]]);
      const p = await wgslPair(gpu!, program(), () => undefined, { maxDims: small, limits });
      for (const t of [1, 3, 7]) {
        const xs = ndarray(
          [t, 5],
          Float32Array.from({ length: 5 * t }, (_, i) => Math.sin(i * 1.7)),
        );
        const { want } = await p.run(
          new Map([
            ["x", xs],
            ["y", ys],
          ]),
        );
        const last = Array.from(want[0].data.slice(-5));
        const expected = last.indexOf(Math.max(...last));
        const [got] = await p.session.run(
          [
            { shape: [t, 5], data: xs.data },
            { shape: [5], data: ys.data },
          ],
          "argmax",
        );
        expect(got.shape).toEqual([1]);
        expect(got.data[0]).toBe(expected);
      }
    }
    // Ties go to the lowest index, as torch.argmax.
    const p = await wgslPair(gpu!, program(), () => undefined, { maxDims });
    const [tie] = await p.session.run(
      [
        { shape: [1, 5], data: new Float32Array([0, 2, 0, 2, 1]) },
        { shape: [5], data: new Float32Array([1, 1, 1, 1, 1]) },
      ],
      "argmax",
    );
    expect(tie.data[0]).toBe(1);
  });

  it("folds dispatches over the per-dimension workgroup limit into two dimensions", async () => {
    const limits = withLimits(gpu!.limits, {
      maxComputeWorkgroupsPerDimension: 9,
      maxComputeInvocationsPerWorkgroup: 4,
      maxComputeWorkgroupSizeX: 4,
    });
    const p = await wgslPair(gpu!, program(), () => undefined, { maxDims, limits });
    const xs = ndarray(
      [11, 5],
      Float32Array.from({ length: 55 }, (_, i) => Math.cos(i)),
    );
    const ys = ndarray([5], Float32Array.from([1, 2, 3, 4, 5]));
    const { got, want } = await p.run(
      new Map([
        ["x", xs],
        ["y", ys],
      ]),
    );
    expect(relError(got[0], want[0])).toBeLessThanOrEqual(1e-6);
  });
});

describe.skipIf(!gpu)("a lost device", () => {
  it("is reported, not hung on", async () => {
    const own = await requestGpu();
    const model = await loadModel(own.device, emitWgsl(program(), { maxDims }), () => undefined);
    const session = model.createSession();
    own.device.destroy();
    await own.device.lost;
    const e = await errorOf(() =>
      session.run([
        { shape: [2, 5], data: new Float32Array(10) },
        { shape: [5], data: new Float32Array(5) },
      ]),
    );
    expect(e.kind).toBe("device");
    expect(e.detail).toMatch(/^the device was lost: destroyed/);
  });
});

describe("compile-time limit checks", () => {
  const limitError = (f: () => unknown): KilnError => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(KilnError);
      return e as KilnError;
    }
    return expect.fail("no error");
  };

  it("names the kernel, the limit, the amount asked and the amount available", () => {
    const e = limitError(() =>
      emitWgsl(program(), {
        maxDims,
        limits: withLimits(WEBGPU_DEFAULTS, { maxStorageBuffersPerShaderStage: 2 }),
      }),
    );
    expect(e.kind).toBe("limit");
    expect(e.where).toBe("k0_map");
    expect(e.detail).toBe(
      "maxStorageBuffersPerShaderStage: storage buffers bound: 3, the profile allows 2",
    );
  });

  it("refuses a dispatch that two folded dimensions cannot hold", () => {
    const e = limitError(() =>
      emitWgsl(program(), {
        maxDims: new Map([["T", 1000]]),
        limits: withLimits(WEBGPU_DEFAULTS, { maxComputeWorkgroupsPerDimension: 3 }),
      }),
    );
    expect(e.where).toBe("k0_map");
    expect(e.detail).toMatch(
      /^maxComputeWorkgroupsPerDimension: workgroups at capacity .*: 20, the profile allows 9$/,
    );
  });

  it("asks for a maximum for a dim that nothing bounds", () => {
    const e = limitError(() => emitWgsl(program()));
    expect(e.kind).toBe("usage");
    expect(e.where).toBe("dim T");
    expect(e.detail).toMatch(/give it a maximum/);
  });

  it("refuses an index that overflows u32", () => {
    const e = limitError(() => emitWgsl(program(), { maxDims: new Map([["T", 2 ** 31]]) }));
    expect(e.detail).toMatch(
      /^u32 index: an operand's largest element index is \d+, the profile allows 4294967295$/,
    );
  });
});
