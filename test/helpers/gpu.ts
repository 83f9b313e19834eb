/** The WebGPU device for tests: the process's shared one (runtime/webgpu/device.ts), or
 *  undefined — with a visible message — where no adapter can be had at all. With
 *  KILN_REQUIRE_GPU=1 (set by .ci/run, which installs a software adapter) a missing adapter fails
 *  instead, so CI never skips these tests silently. */
import { KilnError } from "../../compiler/errors.ts";
import { sharedGpu, type Gpu } from "../../runtime/webgpu/device.ts";

let found: Promise<Gpu | undefined> | undefined;

export function testGpu(): Promise<Gpu | undefined> {
  found ??= sharedGpu().catch((e: unknown) => {
    if (process.env.KILN_REQUIRE_GPU === "1" || !(e instanceof KilnError)) throw e;
    process.stderr.write(`\n*** WebGPU tests skipped: ${e.message}\n\n`);
    return undefined;
  });
  return found;
}
