/** `README.md` of an artifact: what it is, how to use it in Node and in a browser, the API, and
 *  the inputs this model takes. Names from the model appear in code spans, their backticks and
 *  line breaks removed. */
import type { ArtifactSpec, InputSpec } from "./runtime.ts";

export function code(s: string): string {
  return `\`${s.replace(/[`\r\n\u2028\u2029]/g, " ")}\``;
}

export function inputRow(i: InputSpec): string {
  const what = i.vocab !== null ? `token ids in [0, ${i.vocab})` : `${i.dtype} values`;
  const len =
    typeof i.length === "number"
      ? `exactly ${i.length}`
      : i.maxLength !== null
        ? `1 to ${i.maxLength}`
        : "1 or more";
  const phase =
    i.phase === "source"
      ? "once per sequence: the encoder runs on it, decoding steps reuse the result"
      : "every position";
  return `| ${code(i.key)} | ${code(i.name)} | ${what} | ${len} | ${phase} |`;
}

export function readme(
  spec: ArtifactSpec,
  kilnVersion: string,
  manifest: { kernels: number },
): string {
  const example = spec.inputs
    .map(
      (i) =>
        `${/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(i.key) ? i.key : JSON.stringify(i.key)}: [1, 2, 3]`,
    )
    .join(", ");
  const kind =
    spec.kind === "gpt2"
      ? "A GPT-2 (Hugging Face checkpoint layout)"
      : spec.kind === "seq2seq"
        ? "The encoder–decoder Transformer of the PyTorch translation tutorial (`Seq2SeqTransformer` layout)"
        : `The model ${code(spec.name)}, written in kiln's DSL`;
  const names =
    spec.kind === "model"
      ? "The weights file must hold exactly the params listed in `manifest.json` (`params`), under those names and shapes."
      : spec.kind === "gpt2"
        ? "Tensor names may carry the `transformer.` prefix that `save_pretrained` writes; the causal-mask buffers (`h.N.attn.bias`) and a stored `lm_head.weight` (the head is tied to `wte`) are not read."
        : "The `positional_encoding.pos_embedding` buffer is not read: the kernels compute the sinusoids.";
  const config =
    spec.config.length > 0
      ? `When \`load\` is given a folder with a \`config.json\`, its fields (${spec.config.map((c) => code(c.key)).join(", ")}) must equal the ones the model was compiled with: weights of the right shapes for another head count would otherwise give wrong numbers without an error.`
      : "";
  return `# A kiln artifact

${kind}, compiled by kiln ${kilnVersion} into ${manifest.kernels} TypeScript kernels.
It runs on the CPU in plain JavaScript: no dependencies, no kiln, nothing downloaded.

| file | what it is |
|---|---|
| \`model.js\` | the ES module to import: the kernels, a strict safetensors reader, the loader and the sampler |
| \`model.d.ts\` | its types |
| \`model.ts\` | the same module as TypeScript, readable: each kernel function starts with the IR line(s) it implements (kernels with the same code, as a transformer's layers have, share one function) |
| \`manifest.json\` | the kernels in dispatch order, buffers, the memory plan, inputs and outputs, the model's config |
| \`package.json\` | marks \`model.js\` as an ES module, so the folder can be imported as a package |

## Use it

Node (18 or later):

\`\`\`js
import { load } from "./model.js";

const model = await load("path/to/checkpoint"); // a folder holding model.safetensors
const { logits, rows, cols } = model.forward({ ${example} });
${spec.noGenerate === null ? `const next = model.generate({ ${example}, maxNewTokens: 8 }); // greedy\n` : ""}\`\`\`

A browser (or any other JavaScript runtime): give \`load\` the bytes of \`model.safetensors\`.

\`\`\`html
<script type="module">
  import { load } from "./model.js";
  const bytes = await (await fetch("model.safetensors")).arrayBuffer();
  const model = await load(bytes);
</script>
\`\`\`

\`model.js\` imports nothing; in Node it imports \`node:fs/promises\` dynamically, and only when
\`load\` is given a path.

## API

- \`load(source)\` → \`Promise<Model>\`. \`source\` is a checkpoint folder (Node; \`model.safetensors\`
  is read from it, and \`config.json\` checked when present), a path to a \`.safetensors\` file
  (Node), or the file's bytes: a \`Uint8Array\` or an \`ArrayBuffer\`. The file is validated as
  kiln validates it (header bounds, strict JSON with duplicate keys refused, offsets that tile the
  data exactly, no trailing bytes); F32, F16 and BF16 tensors are converted to float32.
  ${names}
  ${config}
- \`model.forward(inputs)\` → \`{ logits: Float32Array, rows, cols }\`: \`rows × cols\`, row-major, one
  row per position${spec.output.shape.length === 2 ? ", one column per vocabulary entry" : ""}.
${
  spec.noGenerate === null
    ? `- \`model.generate({ ...inputs, maxNewTokens, temperature?, topK?, seed? })\` → the new token ids
  (\`number[]\`). Temperature 0 (the default) is greedy; above 0 it samples from
  \`softmax(logits / temperature)\`, among the \`topK\` most likely tokens when given, with a seeded
  generator (\`seed\`, default 0): the same tokens as \`kiln generate --temperature T --top-k K --seed S\`.
  ${spec.kvCache ? "The prompt runs once; each new token is one step against a KV cache." : "Each new token reruns the whole sequence (this model has no KV cache)."}`
    : `- \`model.generate\` is not available: ${spec.noGenerate}.`
}

Errors are \`KilnError\`s (exported), with \`kind\` (\`"safetensors"\`, \`"checkpoint"\`, \`"input"\`,
\`"usage"\`), \`where\` and a message that names the tensor, input or field and the cause.

## Inputs

| key | graph input | values | length | fed |
|---|---|---|---|---|
${spec.inputs.map(inputRow).join("\n")}

Token ids are checked against the vocabulary and lengths against the context before anything
runs. Every sequence is an array of numbers or a typed array.
`;
}
