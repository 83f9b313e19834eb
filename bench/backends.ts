/** The backends `kiln bench --backends` knows, by name. Each is loaded only when asked for, so
 *  the peer's dependency is needed only to run the peer.
 *
 *  To add one (kiln's generated TypeScript kernels, `ts`): write bench/backend-<name>.ts whose
 *  `create(ctx)` returns a Backend (harness.ts), list it here with its side, and make it the
 *  default kiln backend in DEFAULT_BACKENDS. */
import type { BackendEntry } from "./harness.ts";

export const BACKENDS: Readonly<Record<string, BackendEntry>> = {
  ref: { side: "kiln", load: async () => (await import("./backend-ref.ts")).create },
  tfjs: { side: "peer", load: async () => (await import("./backend-tfjs.ts")).create },
};

/** kiln's best path so far, and the peer. */
export const DEFAULT_BACKENDS: readonly string[] = ["ref", "tfjs"];
