#!/usr/bin/env node
// The `kiln` command. kiln is written in TypeScript and runs through tsx, which also lets the CLI
// import a user's own model file (`kiln inspect my-model.ts`) with source-mapped line numbers.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
