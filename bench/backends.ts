/** The backends `kiln bench --backends` knows, by name. Each is loaded only when asked for, so
 *  the peer's dependency is needed only to run the peer.
 *
 *  To add one: write bench/backend-<name>.ts whose `create(ctx)` returns a Backend (harness.ts),
 *  list it here with its side, and, if it is kiln's best, make it the default in
 *  DEFAULT_BACKENDS. */
import type { BackendEntry } from "./harness.ts";

export const BACKENDS: Readonly<Record<string, BackendEntry>> = {
  ref: { side: "kiln", load: async () => (await import("./backend-ref.ts")).create },
  ts: { side: "kiln", load: async () => (await import("./backend-ts.ts")).create },
  tfjs: { side: "peer", load: async () => (await import("./backend-tfjs.ts")).create },
};

/** kiln's best path (the generated TypeScript kernels), and the peer. */
export const DEFAULT_BACKENDS: readonly string[] = ["ts", "tfjs"];
