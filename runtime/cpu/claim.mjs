// Claiming the chunks of a shared matmul: one word holds the job's generation (high 32 bits) and
// the next unclaimed chunk (low 32 bits); a thread claims by compare-and-swap, so a thread that
// comes late takes what is left and one that holds a message of an older job claims nothing.
// Every finished chunk, failed or not, adds one to state[0] and wakes the waiting caller.
// Plain JavaScript: the main thread (threads.ts) and the workers (worker.mjs) both run it.

/** Claims chunks of job `gen` until none is left; runs each. */
export function runChunks(claim, state, gen, total, run) {
  const tag = BigInt(gen);
  const base = tag << 32n;
  for (;;) {
    const v = Atomics.load(claim, 0);
    if (v >> 32n !== tag) return;
    const next = Number(v - base);
    if (next >= total) return;
    if (Atomics.compareExchange(claim, 0, v, v + 1n) !== v) continue;
    try {
      run(next);
    } finally {
      Atomics.add(state, 0, 1);
      Atomics.notify(state, 0);
    }
  }
}
