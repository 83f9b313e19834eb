// Runs one `kiln bench` backend in a process of its own, so that its peak RSS is its own and the
// backends do not share a heap. bench/run.ts starts it; like bin/kiln.mjs it runs the TypeScript
// through tsx.
import { register } from "tsx/esm/api";

register();
await import("./worker.ts");
