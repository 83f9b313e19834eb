/** Where a command writes: stdout for its result, stderr for errors and diagnostics. Tests pass
 *  their own to run the CLI in-process. */
export interface IO {
  out(s: string): void;
  err(s: string): void;
}
