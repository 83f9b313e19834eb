/** The model DSL: everything a model file imports. */
export { ModelBuilder, type Tensor } from "./builder.ts";
export { defineModel, buildGraph, type ModelDef, type Config } from "./model.ts";
export * from "./primitives.ts";
export * from "./layers.ts";
