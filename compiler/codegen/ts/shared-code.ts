/** Kernels with the same code share one function. The blocks of a transformer lower to the same
 *  kernels layer after layer — the same shapes, strides and epilogues, other buffers, which the
 *  dispatch passes as arguments — so GPT-2 small's 12 layers would otherwise emit 12 copies of
 *  each. One function per distinct code keeps the module readable, and the JIT compiles and
 *  warms each kernel once, not once per layer (a first decoding step of GPT-2 small spent ~2 s
 *  running the 12 copies cold). Worker threads warm a shared kernel up once, too.
 *
 *  Two kernels share when their functions are the same text after the declaration's name — and
 *  their pack functions too, when they pack weights — so sharing never changes what runs. */
import type { KernelFunction } from "./kernel.ts";

/** The function's text from its declaration on, with the declared name left out (the header
 *  comment above it, which names the kernel's IR, is not code); undefined when the source has
 *  no declaration of `name` at the start of a line. */
export function codeOf(source: string, name: string): string | undefined {
  const m = /^export function (\w+)\(/m.exec(source);
  if (!m || m[1] !== name) return undefined;
  return source.slice(m.index + m[0].length);
}

/** For each kernel, the index of the first kernel with the same code (itself when it is the
 *  first). */
export function sharedCode(fns: readonly KernelFunction[]): number[] {
  const first = new Map<string, number>();
  return fns.map((f, i) => {
    const code = codeOf(f.source, f.name);
    const pack = f.pack ? codeOf(f.pack.source, f.pack.name) : "";
    if (code === undefined || pack === undefined) return i;
    const key = `${code}\u0000${pack}`;
    const at = first.get(key);
    if (at !== undefined) return at;
    first.set(key, i);
    return i;
  });
}
