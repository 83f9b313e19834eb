/** `README.md` of a WGSL artifact: what it is, how to get a GPUDevice and use it in Node (the
 *  `webgpu` package) and in a browser (`navigator.gpu`), the API, the inputs this model takes,
 *  and how the kernels/*.wgsl files are driven, for people writing their own driver. Names from
 *  the model appear in code spans only (ts/artifact/readme.ts's `code`). */
import { code, inputRow } from "../../ts/artifact/readme.ts";
import type { ArtifactSpec } from "../../ts/artifact/runtime.ts";

export interface WgslReadmeFacts {
  readonly kernels: number;
  readonly limitsName: string;
  /** GPU bytes at capacity (manifest.ts's gpuBytes). */
  readonly memory: { readonly model: number; readonly session: number };
  /** The decoding program generate runs, when the model has a KV cache. */
  readonly decoding?: {
    readonly kernels: number;
    readonly memory: { readonly model: number; readonly session: number };
  };
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

export function wgslReadme(spec: ArtifactSpec, kilnVersion: string, f: WgslReadmeFacts): string {
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
  const generateLine =
    spec.noGenerate === null
      ? `const next = await model.generate({ ${example}, maxNewTokens: 8 }); // greedy\n`
      : "";
  return `# A kiln artifact for WebGPU

${kind}, compiled by kiln ${kilnVersion} into ${f.kernels} WGSL kernels, with the small driver
that runs them on a WebGPU device: in a browser (\`navigator.gpu\`) or in Node (the \`webgpu\`
package). Nothing else: no kiln, no other dependency, nothing downloaded.

| file | what it is |
|---|---|
| \`model.js\` | the ES module to import: the kernels' WGSL, the driver, a strict safetensors reader, the loader and the sampler |
| \`model.d.ts\` | its types |
| \`kernels/*.wgsl\` | each kernel's WGSL, as \`model.js\` runs it (for reading, or for your own driver) |
${f.decoding ? `| \`kernels/decode/*.wgsl\` | the decoding program's ${f.decoding.kernels} kernels: what \`generate\` runs (below) |\n` : ""}| \`manifest.json\` | the kernels in dispatch order with their bindings and workgroup counts, the buffers and their storage, the dims, inputs and outputs, the model's config |
| \`package.json\` | marks \`model.js\` as an ES module, so the folder can be imported as a package |

## Use it

You bring the \`GPUDevice\`; \`load\` takes it and the weights.

### Node (20 or later)

\`npm install webgpu\` (Dawn, prebuilt), then:

\`\`\`js
import { create } from "webgpu";
import { load } from "./model.js";

const gpu = create([]); // keep this object referenced while the device is in use
const adapter = await gpu.requestAdapter();
const device = await adapter.requestDevice();

const model = await load(device, "path/to/checkpoint"); // a folder holding model.safetensors
const { logits, rows, cols } = await model.forward({ ${example} });
${generateLine}model.destroy();
device.destroy();
\`\`\`

On Linux without a GPU, Dawn runs on Mesa's lavapipe (25 or later): \`create(["backend=vulkan"])\`.

### A browser

Serve the folder (and the weights) over HTTP: a module script does not load from \`file://\`, and
WebGPU needs a secure context (\`https:\` or \`localhost\`).

\`\`\`html
<script type="module">
  import { load } from "./model.js";
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter.requestDevice();
  const bytes = await (await fetch("model.safetensors")).arrayBuffer();
  const model = await load(device, bytes);
  const { logits, rows, cols } = await model.forward({ ${example} });
</script>
\`\`\`

\`model.js\` imports nothing; in Node it imports \`node:fs/promises\` dynamically, and only when
\`load\` is given a path.

### Limits and memory

The kernels were compiled against ${f.limitsName} (\`limits\` in \`manifest.json\`), which every
WebGPU device supports, so a device from a plain \`adapter.requestDevice()\` runs them; \`load\`
checks the device's limits first. A buffer larger than one binding allows is stored in chunks.
Every buffer is allocated once, at the longest sequence the model accepts: ${mib(f.memory.model)}
for the weights and the model's own buffers, and ${mib(f.memory.session)} for its working
buffers (\`kiln compile --seq-len N\` makes the longest sequence, and this, smaller).${
    f.decoding
      ? `
The first \`generate\` loads the decoding program (below): ${mib(f.decoding.memory.model)} more for
its own copy of the weights and buffers, and ${mib(f.decoding.memory.session)} for its session.`
      : ""
  }

### TypeScript

\`model.d.ts\` refers to \`GPUDevice\`: TypeScript's DOM library (6.0 or later) declares it, or
\`@webgpu/types\` (add it to \`compilerOptions.types\`).

## API

- \`load(device, source)\` → \`Promise<Model>\`. \`device\` is a \`GPUDevice\`. \`source\` is a
  checkpoint folder (Node; \`model.safetensors\` is read from it, and \`config.json\` checked when
  present), a path to a \`.safetensors\` file (Node), or the file's bytes: a \`Uint8Array\` or an
  \`ArrayBuffer\`. The file is validated as kiln validates it (header bounds, strict JSON with
  duplicate keys refused, offsets that tile the data exactly, no trailing bytes); F32, F16 and
  BF16 tensors are converted to float32. Then the kernels are compiled on the device (a shader
  the device rejects is an error naming the kernel) and the weights uploaded.
  ${names}
  ${config}
- \`await model.forward(inputs)\` → \`{ logits: Float32Array, rows, cols }\`: \`rows × cols\`,
  row-major, one row per position${spec.output.shape.length === 2 ? ", one column per vocabulary entry" : ""}.
${
  spec.noGenerate === null
    ? `- \`await model.generate({ ...inputs, maxNewTokens, temperature?, topK?, seed? })\` → the new
  token ids (\`number[]\`). Temperature 0 (the default) is greedy; above 0 it samples from
  \`softmax(logits / temperature)\`, among the \`topK\` most likely tokens when given, with a seeded
  generator (\`seed\`, default 0), as \`kiln generate --temperature T --top-k K --seed S\` does.
  ${spec.kvCache ? "The prompt runs once; each new token is one step against a KV cache kept on the GPU." : "Each new token reruns the whole sequence (this model has no KV cache)."}${
    f.decoding
      ? `
  \`generate\` runs the decoding program (\`kernels/decode/*.wgsl\`, \`decoding\` in
  \`manifest.json\`): the same model after kiln's last-position pass, which computes only the last
  position's logits; it is compiled and its weights uploaded on the first \`generate\`, and at
  temperature 0 only the chosen token is read back from the GPU. \`forward\` runs the full
  program (\`kernels/*.wgsl\`).`
      : ""
  }`
    : `- \`model.generate\` is not available: ${spec.noGenerate}.`
}
- \`model.destroy()\` frees the model's GPU buffers (the device stays yours).

A model runs one call at a time: a call made while another runs waits for it. Errors are
\`KilnError\`s (exported), with \`kind\` (\`"safetensors"\`, \`"checkpoint"\`, \`"input"\`,
\`"usage"\`, \`"device"\`), \`where\` and a message that names the tensor, input, field or kernel
and the cause.

## Inputs

| key | graph input | values | length | fed |
|---|---|---|---|---|
${spec.inputs.map(inputRow).join("\n")}

Token ids are checked against the vocabulary and lengths against the context before anything
runs. Every sequence is an array of numbers or a typed array.

## Driving kernels/*.wgsl yourself

Each file is one compute shader with the entry point \`main\`. Binding 0 of group 0 is a uniform
struct of \`u32\` dims, in the order of \`dims\` in \`manifest.json\` (the same struct in every
kernel); bindings 1, 2, … are the storage buffers in the kernel's \`bindings\` (a buffer id and,
for a buffer stored in chunks, the chunk), read-only or read-write as listed. Buffers with a
\`slot\` share the slot's storage. Dispatch \`ceil(count / per)\` workgroups (\`workgroups\`:
\`count\` is a sum of \`coef × dims\` terms), as \`(x, y)\` with \`x\` at most
\`maxComputeWorkgroupsPerDimension\` when there are more. Kernels run in the listed order; the
\`load\` phase once, \`source\` when the source inputs change, \`step\` on every call.${
    f.decoding
      ? ` The decoding
program (\`decoding\` in \`manifest.json\`, \`kernels/decode/*.wgsl\`) is driven the same way with
its own dims, buffers and params.`
      : ""
  }
`;
}
