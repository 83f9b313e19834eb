/** The checks of an artifact's `forward` and `generate` arguments, before any kernel runs: every
 *  input present and known, an array of numbers, token ids inside the vocabulary, lengths within
 *  the context and equal where they share a dim; the generate settings in range. Copied into
 *  every `model.ts` with runtime.ts (inline-source.ts); the WGSL artifact's loader uses them too. */
import { fail } from "../../../errors.ts";
import type {
  ArtifactSpec,
  GenerateSettings,
  InputSpec,
  KernelTensor,
  Sequence,
} from "./runtime.ts";

function isSequence(x: unknown): x is Sequence {
  return (
    typeof x === "object" &&
    x !== null &&
    "length" in x &&
    typeof x.length === "number" &&
    Number.isSafeInteger(x.length) &&
    x.length >= 0
  );
}

/** Checks every input of `phase` (all when undefined) and packs them in the graph's order. */
export function packModelInputs(
  spec: ArtifactSpec,
  given: Readonly<Record<string, unknown>>,
  phase?: string,
): KernelTensor[] {
  if (typeof given !== "object" || given === null)
    fail("input", "inputs", `expected an object with ${describeKeys(spec)}`);
  for (const key of Object.keys(given))
    if (given[key] !== undefined && !spec.inputs.some((i) => i.key === key))
      fail("input", key, `this model has no such input (it takes ${describeKeys(spec)})`);
  const lengths = new Map<string, { key: string; n: number }>();
  return spec.inputs
    .filter((s) => phase === undefined || s.phase === phase)
    .map((s) => {
      const x = given[s.key];
      if (x === undefined)
        fail(
          "input",
          s.key,
          s.phase === "source"
            ? `missing: the ${spec.name} model also takes this sequence (${describeInput(s)})`
            : `missing (${describeInput(s)})`,
        );
      if (!isSequence(x))
        fail("input", s.key, `expected an array of numbers (${describeInput(s)})`);
      const n = x.length;
      if (n === 0) fail("input", s.key, "needs at least one element");
      if (typeof s.length === "number" && n !== s.length)
        fail("input", s.key, `length ${n}, but the model takes exactly ${s.length}`);
      if (s.maxLength !== null && n > s.maxLength)
        fail(
          "input",
          s.key,
          `length ${n} exceeds ${s.why ?? "the model's limit"} (${s.maxLength})`,
        );
      if (typeof s.length === "string") {
        const other = lengths.get(s.length);
        if (other && other.n !== n)
          fail(
            "input",
            s.key,
            `length ${n}, but ${other.key} has length ${other.n}; they must match`,
          );
        lengths.set(s.length, { key: s.key, n });
      }
      const data = s.dtype === "i32" ? new Int32Array(n) : new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const v = x[i];
        if (typeof v !== "number")
          fail("input", s.key, `element ${i} is a ${typeof v}, expected a number`);
        if (s.vocab !== null && (!Number.isInteger(v) || v < 0 || v >= s.vocab))
          fail(
            "input",
            s.key,
            `token id ${v} at position ${i} is outside the vocabulary [0, ${s.vocab})`,
          );
        if (s.dtype === "i32" && (!Number.isInteger(v) || Math.abs(v) > 2 ** 31 - 1))
          fail("input", s.key, `element ${i} is ${v}, not a 32-bit integer`);
        data[i] = v;
      }
      return { shape: [n], data };
    });
}

function describeInput(s: InputSpec): string {
  return s.vocab !== null ? `token ids in [0, ${s.vocab})` : `a sequence of ${s.dtype}`;
}

function describeKeys(spec: ArtifactSpec): string {
  return spec.inputs.map((i) => i.key).join(", ");
}

export function checkGenerate(o: GenerateSettings): void {
  if (typeof o.maxNewTokens !== "number" || !Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0)
    fail("usage", "maxNewTokens", `must be a non-negative integer, got ${o.maxNewTokens}`);
  const t = o.temperature ?? 0;
  if (typeof t !== "number" || !(t >= 0) || !Number.isFinite(t))
    fail("usage", "temperature", `must be a number ≥ 0, got ${t}`);
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 1))
    fail("usage", "topK", `must be a positive integer, got ${o.topK}`);
  if (o.seed !== undefined && !Number.isInteger(o.seed))
    fail("usage", "seed", `must be an integer, got ${o.seed}`);
}

/** A generate request checked and packed: its settings, the other fields (the inputs), the
 *  packed inputs, the step input's index and key, and the prompt (that input's ids), after the
 *  context check. Both artifacts' `generate` start here. */
export function generateRequest(spec: ArtifactSpec, request: unknown) {
  if (typeof request !== "object" || request === null)
    fail("usage", "generate", "expected { tokens, maxNewTokens, … }");
  const { maxNewTokens, temperature, topK, seed, ...rest } = request as GenerateSettings;
  checkGenerate({ maxNewTokens, temperature, topK, seed });
  if (spec.noGenerate !== null) fail("usage", "generate", spec.noGenerate);
  const fields = rest as Readonly<Record<string, unknown>>;
  const packed = packModelInputs(spec, fields);
  const at = spec.inputs.findIndex((i) => i.phase === "step");
  const step = spec.inputs[at];
  const prompt = Array.from(packed[at].data);
  if (step.maxLength !== null && prompt.length + maxNewTokens > step.maxLength)
    fail(
      "input",
      "maxNewTokens",
      `${prompt.length} prompt tokens + ${maxNewTokens} new tokens exceed the model's context of ${step.maxLength}`,
    );
  return { maxNewTokens, temperature, topK, seed, fields, packed, step, prompt };
}
