/** Runs a WgslProgram (compiler/codegen/wgsl/program.ts) on a GPUDevice. Self-contained: it
 *  imports nothing, not even types — it declares the part of a WgslProgram it reads
 *  (`DriverProgram`; a WgslProgram is one) — so `kiln compile --target wgsl` copies this file
 *  whole into the standalone artifact as its driver (compiler/codegen/wgsl/artifact.ts).
 *
 *  `loadModel(device, program, weights)` compiles every kernel ahead
 *  (`createComputePipelineAsync`, shader errors caught with error scopes and
 *  `getCompilationInfo` and reported with the kernel's name and IR line), uploads the params
 *  (a param over the binding size in chunks), runs the load phase once. `model.createSession()`
 *  allocates the session's storage at capacity (slots, state, inputs, outputs), makes every bind
 *  group once, and then:
 *  - `run(inputs)` binds the dims from the input shapes (checked against the capacity), runs the
 *    source phase when the source inputs changed, then the step phase with no cached positions,
 *    all in one command encoder and one submit, and reads back the outputs;
 *  - `step(inputs)` runs the step phase with P = the cached length (the KV cache stays on the
 *    GPU between steps).
 *  Errors are WebGpuError {kind, where, detail}: "input" for bad inputs, "device" for a shader
 *  the device rejects, a validation or out-of-memory error, or a lost device. */

export type Term = { readonly coef: number; readonly syms: readonly string[] };

// ── what the driver reads of a WgslProgram (compiler/codegen/wgsl/program.ts, kernel.ts) ────

/** One storage binding: a buffer's chunk, at `@binding(i + 1)` for the i-th entry. */
export interface DriverBinding {
  readonly buffer: number;
  readonly chunk: number;
  readonly access: "read" | "read_write";
}

export interface DriverKernel {
  readonly name: string;
  readonly phase: "load" | "source" | "step";
  /** The whole shader module; its first line is a comment naming the IR node. */
  readonly source: string;
  readonly bindings: readonly DriverBinding[];
  /** ceil(count / per) workgroups, `count` evaluated at the run's dims. */
  readonly workgroups: { readonly count: readonly Term[]; readonly per: number };
}

export interface DriverBuffer {
  readonly id: number;
  readonly node: string;
  readonly dtype: string;
  readonly role: string;
  readonly phase: "load" | "source" | "step";
  readonly name?: string;
  readonly shape: readonly (number | string)[];
  readonly capacityElements: number;
  readonly chunkElements: number;
  readonly slot?: number;
}

export interface DriverProgram {
  readonly name: string;
  readonly dims: readonly { readonly symbol: string; readonly capacity: number | null }[];
  readonly buffers: readonly DriverBuffer[];
  readonly slots: readonly { readonly elements: number; readonly chunkElements: number }[];
  readonly kernels: readonly DriverKernel[];
  readonly inputs: readonly number[];
  readonly outputs: readonly number[];
  readonly seqDim: string | null;
  readonly kvCache:
    | { readonly enabled: true; readonly past: string; readonly capacity: number }
    | { readonly enabled: false; readonly reason: string };
  readonly limits: { readonly maxComputeWorkgroupsPerDimension: number };
}

export class WebGpuError extends Error {
  override readonly name = "WebGpuError";
  constructor(
    readonly kind: "input" | "device",
    readonly where: string,
    readonly detail: string,
  ) {
    super(`${where}: ${detail}`);
  }
}

export interface Tensor {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

export interface Output {
  readonly shape: number[];
  readonly data: Float32Array | Int32Array;
}

/** What a call reads back: every output, or only the index of the largest value in the last
 *  row of the first output (greedy decoding: 4 bytes instead of a row of logits), returned as
 *  one output `{shape: [1], data: Int32Array [index]}`; ties go to the lowest index. */
export type Read = "outputs" | "argmax";

export interface WebGpuSession {
  /** Positions in the KV cache. */
  readonly cachedLength: number;
  run(inputs: readonly Tensor[], read?: Read): Promise<Output[]>;
  step(inputs: readonly Tensor[], read?: Read): Promise<Output[]>;
  destroy(): void;
}

export interface WebGpuModel<P extends DriverProgram = DriverProgram> {
  readonly program: P;
  /** Compilation messages the device gave (warnings and infos), per kernel. */
  readonly messages: readonly string[];
  createSession(): WebGpuSession;
  destroy(): void;
}

/** The weights by checkpoint tensor name. */
export type Weights = (name: string) => Float32Array | Int32Array | undefined;

const USAGE = 0x80 /* STORAGE */ | 0x08 /* COPY_DST */ | 0x04; /* COPY_SRC */
const UNIFORM = 0x40 | 0x08; // UNIFORM | COPY_DST
const MAP_READ = 0x01 | 0x08; // MAP_READ | COPY_DST
const COMPUTE = 0x4; // GPUShaderStage.COMPUTE

type Dims = Map<string, number>;

function evalSym(a: readonly Term[], dims: Dims): number {
  let total = 0;
  for (const t of a) {
    let v = t.coef;
    for (const s of t.syms) v *= dims.get(s) ?? 0;
    total += v;
  }
  return total;
}

/** A buffer's storage: one GPUBuffer per chunk. */
type Storage = GPUBuffer[];

function allocate(
  device: GPUDevice,
  elements: number,
  chunkElements: number,
  label: string,
): Storage {
  const chunks = Math.max(1, Math.ceil(elements / chunkElements));
  return Array.from({ length: chunks }, (_, c) => {
    const n = Math.min(chunkElements, elements - c * chunkElements);
    return device.createBuffer({ size: Math.max(4, n * 4), usage: USAGE, label: `${label}#${c}` });
  });
}

function upload(
  device: GPUDevice,
  s: Storage,
  chunkElements: number,
  data: Float32Array | Int32Array,
): void {
  s.forEach((buf, c) => {
    const part = data.subarray(c * chunkElements, Math.min(data.length, (c + 1) * chunkElements));
    if (part.length)
      device.queue.writeBuffer(buf, 0, part.buffer, part.byteOffset, part.byteLength);
  });
}

/** Shader errors first, then pipelines, all kernels at once. */
type Compiled = {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  /** The compiler's warnings and infos for this code. */
  messages: readonly string[];
};

/** Pipelines by device and code (the source without its comments): the kernels of identical
 *  layers differ only in comments, and a program compiled again (another session of a runner,
 *  the decoding program) reuses what the device already has. */
const PIPELINES = new WeakMap<GPUDevice, Map<string, Promise<Compiled>>>();

async function compile(
  device: GPUDevice,
  program: DriverProgram,
  messages: string[],
): Promise<Compiled[]> {
  let cache = PIPELINES.get(device);
  if (!cache) PIPELINES.set(device, (cache = new Map()));
  const known = cache;
  const all = await Promise.all(
    program.kernels.map((k) => {
      const code = k.source.replace(/\/\/[^\n]*/g, "");
      let p = known.get(code);
      if (!p) known.set(code, (p = compileKernel(device, k)));
      return p;
    }),
  );
  for (const c of new Set(all)) messages.push(...c.messages);
  return all;
}

async function compileKernel(
  device: GPUDevice,
  k: DriverProgram["kernels"][number],
): Promise<Compiled> {
  const messages: string[] = [];
  const irLine = k.source.split("\n")[0].replace(/^\/\/ /, "");
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code: k.source, label: k.name });
  const info = await module.getCompilationInfo();
  const scoped = await device.popErrorScope();
  for (const m of info.messages) {
    const text = `${k.name}: ${m.type} at ${m.lineNum}:${m.linePos}: ${m.message}`;
    if (m.type === "error")
      throw new WebGpuError(
        "device",
        k.name,
        `the shader does not compile: ${m.message} (line ${m.lineNum}:${m.linePos}; ${irLine})`,
      );
    messages.push(text);
  }
  if (scoped)
    throw new WebGpuError("device", k.name, `the shader is invalid: ${scoped.message} (${irLine})`);
  const layout = device.createBindGroupLayout({
    label: k.name,
    entries: [
      { binding: 0, visibility: COMPUTE, buffer: { type: "uniform" } },
      ...k.bindings.map((b, i) => ({
        binding: i + 1,
        visibility: COMPUTE,
        buffer: {
          type: b.access === "read" ? ("read-only-storage" as const) : ("storage" as const),
        },
      })),
    ],
  });
  try {
    const pipeline = await device.createComputePipelineAsync({
      label: k.name,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: "main" },
    });
    return { pipeline, layout, messages };
  } catch (e) {
    throw new WebGpuError(
      "device",
      k.name,
      `the pipeline could not be made: ${(e as Error).message} (${irLine})`,
    );
  }
}

/** Greedy decoding's reduction: the index of the largest of n values (the lowest on ties), one
 *  workgroup of 256. Not generated from a Program: a fixed part of the runtime. */
const ARGMAX_WGSL = `// argmax of row[0..n): each invocation scans a strided part, then a tree merge.
@group(0) @binding(0) var<uniform> n: vec4<u32>;
@group(0) @binding(1) var<storage, read> row: array<f32>;
@group(0) @binding(2) var<storage, read_write> best: array<u32>;
var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;
const NONE = 0xffffffffu;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  var v = -3.4028234663852886e38;
  var at = NONE;
  for (var i = lid; i < n.x; i += 256u) {
    let x = row[i];
    if (at == NONE || x > v) {
      v = x;
      at = i;
    }
  }
  bv[lid] = v;
  bi[lid] = at;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ov = bv[lid + s];
      let oi = bi[lid + s];
      let mine = bi[lid];
      if (oi != NONE && (mine == NONE || ov > bv[lid] || (ov == bv[lid] && oi < mine))) {
        bv[lid] = ov;
        bi[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    best[0] = bi[0];
  }
}
`;

const ARGMAX = new WeakMap<GPUDevice, Promise<GPUComputePipeline>>();

function argmaxPipeline(device: GPUDevice): Promise<GPUComputePipeline> {
  let p = ARGMAX.get(device);
  if (!p) {
    const module = device.createShaderModule({ code: ARGMAX_WGSL, label: "argmax" });
    p = device.createComputePipelineAsync({
      label: "argmax",
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
    ARGMAX.set(device, p);
  }
  return p;
}

/** Scoped work: validation and out-of-memory errors become WebGpuErrors, a lost device too. */
async function guarded<T>(
  device: GPUDevice,
  lost: { reason?: string },
  where: string,
  f: () => Promise<T>,
): Promise<T> {
  if (lost.reason !== undefined)
    throw new WebGpuError("device", where, `the device was lost: ${lost.reason}`);
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  let result: T;
  try {
    result = await f();
  } finally {
    const validation = await device.popErrorScope();
    const oom = await device.popErrorScope();
    if (validation)
      throw new WebGpuError("device", where, `validation error: ${validation.message}`);
    if (oom) throw new WebGpuError("device", where, `out of GPU memory: ${oom.message}`);
  }
  if (lost.reason !== undefined)
    throw new WebGpuError("device", where, `the device was lost: ${lost.reason}`);
  return result;
}

export async function loadModel<P extends DriverProgram>(
  device: GPUDevice,
  program: P,
  weights: Weights,
): Promise<WebGpuModel<P>> {
  const lost: { reason?: string } = {};
  void device.lost.then((info) => {
    lost.reason = `${info.reason}: ${info.message}`;
  });
  const messages: string[] = [];
  const where = `@${program.name}`;
  const compiled = await guarded(device, lost, where, () => compile(device, program, messages));
  // Params and the load phase's buffers belong to the model; sessions share them.
  const owned = new Map<number, Storage>();
  for (const b of program.buffers) {
    if (b.phase !== "load") continue;
    const s = allocate(device, b.capacityElements, b.chunkElements, `b${b.id}`);
    owned.set(b.id, s);
    if (b.role !== "param") continue;
    const name = b.name ?? b.node;
    const w = weights(name);
    if (!w) throw new WebGpuError("input", `param "${name}"`, "missing from the weights");
    if (w.length !== b.capacityElements)
      throw new WebGpuError(
        "input",
        `param "${name}"`,
        `has ${w.length} elements, the program expects ${b.capacityElements} (shape [${b.shape.join(", ")}])`,
      );
    const typed =
      b.dtype === "i32"
        ? w instanceof Int32Array
          ? w
          : Int32Array.from(w)
        : w instanceof Float32Array
          ? w
          : Float32Array.from(w);
    upload(device, s, b.chunkElements, typed);
  }
  const dimsBuffer = (): GPUBuffer =>
    device.createBuffer({
      size: Math.max(16, Math.ceil((program.dims.length * 4) / 16) * 16),
      usage: UNIFORM,
      label: "dims",
    });
  const loadDims = dimsBuffer();
  const loadKernels = program.kernels
    .map((k, i) => [k, i] as const)
    .filter(([k]) => k.phase === "load");
  if (loadKernels.length) {
    await guarded(device, lost, where, async () => {
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      for (const [k, i] of loadKernels) {
        const group = bindGroup(device, compiled[i].layout, k, loadDims, (id) => owned.get(id)!);
        dispatch(pass, compiled[i].pipeline, group, k, new Map(), program);
      }
      pass.end();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
    });
  }
  return {
    program,
    messages,
    createSession: () => createSession(device, program, compiled, owned, dimsBuffer(), lost),
    destroy() {
      for (const s of owned.values()) for (const b of s) b.destroy();
      loadDims.destroy();
    },
  };
}

function bindGroup(
  device: GPUDevice,
  layout: GPUBindGroupLayout,
  k: DriverKernel,
  dims: GPUBuffer,
  storage: (id: number) => Storage,
): GPUBindGroup {
  return device.createBindGroup({
    label: k.name,
    layout,
    entries: [
      { binding: 0, resource: { buffer: dims } },
      ...k.bindings.map((b: DriverBinding, i: number) => ({
        binding: i + 1,
        resource: { buffer: storage(b.buffer)[b.chunk] },
      })),
    ],
  });
}

function dispatch(
  pass: GPUComputePassEncoder,
  pipeline: GPUComputePipeline,
  group: GPUBindGroup,
  k: DriverKernel,
  dims: Dims,
  program: DriverProgram,
): void {
  const n = Math.ceil(evalSym(k.workgroups.count, dims) / k.workgroups.per);
  if (n <= 0) return;
  const perDim = program.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(n, perDim);
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(x, Math.ceil(n / x));
}

function createSession(
  device: GPUDevice,
  program: DriverProgram,
  compiled: readonly { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }[],
  shared: ReadonlyMap<number, Storage>,
  dimsBuffer: GPUBuffer,
  lost: { reason?: string },
): WebGpuSession {
  const where = `@${program.name}`;
  const slots = program.slots.map((s, i) =>
    allocate(device, s.elements, s.chunkElements, `slot${i}`),
  );
  const own = new Map<number, Storage>();
  for (const b of program.buffers)
    if (b.phase !== "load" && b.slot === undefined)
      own.set(b.id, allocate(device, b.capacityElements, b.chunkElements, `b${b.id}`));
  const storage = (id: number): Storage => {
    const b = program.buffers[id];
    return shared.get(id) ?? (b.slot !== undefined ? slots[b.slot] : own.get(id)!);
  };
  const groups = program.kernels.map((k, i) =>
    k.phase === "load" ? undefined : bindGroup(device, compiled[i].layout, k, dimsBuffer, storage),
  );
  const kv = program.kvCache;
  const dims: Dims = new Map();
  let cached = 0;
  let source: Tensor[] | undefined;
  const ids = program.inputs;
  const stepIds = ids.filter((id) => program.buffers[id].phase === "step");
  const sourceIds = ids.filter((id) => program.buffers[id].phase !== "step");
  const capacityOf = new Map(program.dims.map((d) => [d.symbol, d.capacity]));

  /** Binds the dims the inputs carry, checking every shape; changes nothing when one is wrong. */
  function bind(which: readonly number[], inputs: readonly Tensor[], fn: string, keep: Dims): Dims {
    if (inputs.length !== which.length)
      throw new WebGpuError(
        "input",
        where,
        `${fn} takes ${which.length} input(s), got ${inputs.length}`,
      );
    const next: Dims = new Map(keep);
    which.forEach((id, n) => {
      const b = program.buffers[id];
      const x = inputs[n];
      const name = `input "${b.name ?? b.node}"`;
      const want = `expects ${b.dtype}[${b.shape.join(",")}], got [${x.shape.join(",")}]`;
      if (x.shape.length !== b.shape.length) throw new WebGpuError("input", name, want);
      b.shape.forEach((d, i) => {
        const got = x.shape[i];
        if (typeof d === "string" && /^[A-Za-z_]\w*$/.test(d) && !next.has(d)) {
          const max = capacityOf.get(d);
          if (max !== null && max !== undefined && got > max)
            throw new WebGpuError(
              "input",
              name,
              `length ${got} exceeds the compiled capacity (${d} ≤ ${max})`,
            );
          if (!Number.isInteger(got) || got < 0) throw new WebGpuError("input", name, want);
          next.set(d, got);
          return;
        }
        const expect =
          typeof d === "number"
            ? d
            : d
                .split("+")
                .reduce((a, t) => a + (/^\d+$/.test(t) ? Number(t) : (next.get(t) ?? NaN)), 0);
        if (got !== expect) throw new WebGpuError("input", name, `${want} (dim ${i})`);
      });
      let numel = 1;
      for (const s of x.shape) numel *= s;
      if (x.data.length !== numel)
        throw new WebGpuError(
          "input",
          name,
          `has ${x.data.length} values for shape [${x.shape.join(",")}]`,
        );
    });
    return next;
  }

  function feed(id: number, x: Tensor): void {
    const b = program.buffers[id];
    const data = b.dtype === "i32" ? Int32Array.from(x.data) : Float32Array.from(x.data);
    upload(device, storage(id), b.chunkElements, data);
  }

  function writeDims(): void {
    const values = new Uint32Array(Math.max(4, Math.ceil(program.dims.length / 4) * 4));
    program.dims.forEach((d, i) => (values[i] = dims.get(d.symbol) ?? 0));
    device.queue.writeBuffer(dimsBuffer, 0, values);
  }

  async function execute(phases: readonly ("source" | "step")[], read: Read): Promise<Output[]> {
    writeDims();
    const argmax = read === "argmax" ? await argmaxPipeline(device) : undefined;
    // One command encoder, one compute pass, one submit per call.
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    program.kernels.forEach((k, i) => {
      if (!(phases as readonly string[]).includes(k.phase)) return;
      dispatch(pass, compiled[i].pipeline, groups[i]!, k, dims, program);
    });
    pass.end();
    const reads = argmax
      ? [lastRowArgmax(encoder, argmax, program.buffers[program.outputs[0]])]
      : program.outputs.map((id) => readback(encoder, program.buffers[id]));
    device.queue.submit([encoder.finish()]);
    // Wait for the work before mapping: mapAsync straight after a long submit was seen to wait
    // tens of seconds past the work's end in Node's Dawn (webgpu 0.6 on lavapipe: 30 s instead of
    // 0.35 s for a forward of gpt2-tiny with chunked buffers).
    await device.queue.onSubmittedWorkDone();
    return Promise.all(reads.map((r) => r()));
  }

  /** The current shape of a buffer. */
  function shapeOf(b: DriverBuffer): number[] {
    return b.shape.map((d) =>
      evalSym(
        typeof d === "number"
          ? [{ coef: d, syms: [] }]
          : d
              .split("+")
              .map((t) =>
                /^\d+$/.test(t) ? { coef: Number(t), syms: [] } : { coef: 1, syms: [t] },
              ),
        dims,
      ),
    );
  }

  /** Encodes: the last row of `b` copied to a scratch row, the argmax kernel over it, its 4-byte
   *  result copied to a mappable buffer; the returned function maps it. */
  function lastRowArgmax(
    encoder: GPUCommandEncoder,
    pipeline: GPUComputePipeline,
    b: DriverBuffer,
  ): () => Promise<Output> {
    const shape = shapeOf(b);
    const cols = shape.length ? shape[shape.length - 1] : 1;
    const total = shape.reduce((a, x) => a * x, 1);
    const row = device.createBuffer({
      size: Math.max(4, cols * 4),
      usage: USAGE,
      label: "argmax row",
    });
    const size = device.createBuffer({ size: 16, usage: UNIFORM, label: "argmax n" });
    const best = device.createBuffer({ size: 4, usage: USAGE, label: "argmax" });
    const staging = device.createBuffer({ size: 4, usage: MAP_READ, label: "read argmax" });
    device.queue.writeBuffer(size, 0, new Uint32Array([cols, 0, 0, 0]));
    // The row [total − cols, total) may straddle chunks: one copy per chunk it touches.
    storage(b.id).forEach((buf, c) => {
      const first = Math.max(total - cols, c * b.chunkElements);
      const end = Math.min(total, (c + 1) * b.chunkElements);
      if (end > first)
        encoder.copyBufferToBuffer(
          buf,
          (first - c * b.chunkElements) * 4,
          row,
          (first - (total - cols)) * 4,
          (end - first) * 4,
        );
    });
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: size } },
          { binding: 1, resource: { buffer: row } },
          { binding: 2, resource: { buffer: best } },
        ],
      }),
    );
    pass.dispatchWorkgroups(1);
    pass.end();
    encoder.copyBufferToBuffer(best, 0, staging, 0, 4);
    return async () => {
      await staging.mapAsync(0x0001 /* GPUMapMode.READ */);
      const index = new Uint32Array(staging.getMappedRange().slice(0, 4))[0];
      staging.unmap();
      for (const x of [staging, row, size, best]) x.destroy();
      return { shape: [1], data: Int32Array.of(index) };
    };
  }

  /** Encodes the copy of an output's current elements to a mappable buffer; the returned
   *  function maps it and gives the values. */
  function readback(encoder: GPUCommandEncoder, b: DriverBuffer): () => Promise<Output> {
    const shape = shapeOf(b);
    const n = shape.reduce((a, x) => a * x, 1);
    const staging = device.createBuffer({
      size: Math.max(4, n * 4),
      usage: MAP_READ,
      label: `read b${b.id}`,
    });
    storage(b.id).forEach((buf, c) => {
      const first = c * b.chunkElements;
      const count = Math.min(b.chunkElements, n - first);
      if (count > 0) encoder.copyBufferToBuffer(buf, 0, staging, first * 4, count * 4);
    });
    return async () => {
      await staging.mapAsync(0x0001 /* GPUMapMode.READ */);
      const bytes = staging.getMappedRange().slice(0, n * 4);
      staging.unmap();
      staging.destroy();
      return { shape, data: b.dtype === "i32" ? new Int32Array(bytes) : new Float32Array(bytes) };
    };
  }

  const sameTensor = (a: Tensor, b: Tensor) =>
    a.shape.length === b.shape.length &&
    a.shape.every((d, i) => d === b.shape[i]) &&
    a.data.length === b.data.length &&
    Array.prototype.every.call(a.data, (v: number, i: number) => v === b.data[i]);

  return {
    get cachedLength() {
      return cached;
    },
    async run(inputs, read = "outputs") {
      const next = bind(ids, inputs, "run", new Map());
      if (kv.enabled) next.set(kv.past, 0);
      return guarded(device, lost, where, async () => {
        dims.clear();
        for (const [s, v] of next) dims.set(s, v);
        const byId = new Map(ids.map((id, i) => [id, inputs[i]]));
        const same =
          source !== undefined && sourceIds.every((id, i) => sameTensor(source![i], byId.get(id)!));
        const phases: ("source" | "step")[] = ["step"];
        if (!same && sourceIds.length) {
          source = undefined;
          for (const id of sourceIds) feed(id, byId.get(id)!);
          phases.unshift("source");
        }
        for (const id of stepIds) feed(id, byId.get(id)!);
        const out = await execute(phases, read);
        if (!same && sourceIds.length)
          source = sourceIds.map((id) => ({
            shape: [...byId.get(id)!.shape],
            data: Array.from(byId.get(id)!.data),
          }));
        cached = program.seqDim !== null ? (dims.get(program.seqDim) ?? 0) : 0;
        return out;
      });
    },
    async step(inputs, read = "outputs") {
      if (!kv.enabled) throw new WebGpuError("input", where, `no KV cache: ${kv.reason}`);
      if (sourceIds.length && source === undefined)
        throw new WebGpuError("input", where, "step before run: the source has not been fed");
      const next = bind(
        stepIds,
        inputs,
        "step",
        new Map([...dims].filter(([s]) => s !== program.seqDim && s !== kv.past)),
      );
      const t = program.seqDim !== null ? (next.get(program.seqDim) ?? 0) : 0;
      if (cached + t > kv.capacity)
        throw new WebGpuError(
          "input",
          `input "${program.buffers[stepIds[0]]?.name ?? ""}"`,
          `${cached} cached + ${t} new positions exceed the KV cache's ${kv.capacity} rows`,
        );
      next.set(kv.past, cached);
      return guarded(device, lost, where, async () => {
        dims.clear();
        for (const [s, v] of next) dims.set(s, v);
        stepIds.forEach((id, i) => feed(id, inputs[i]));
        const out = await execute(["step"], read);
        cached += t;
        return out;
      });
    },
    destroy() {
      for (const s of slots) for (const b of s) b.destroy();
      for (const s of own.values()) for (const b of s) b.destroy();
      dimsBuffer.destroy();
    },
  };
}
