/** Element types. f32 and i32 are what models use today; f16 is declared so that storage and
 *  compute variants can be added without touching every table. */
export type DType = "f32" | "f16" | "i32";

export const DTYPES: readonly DType[] = ["f32", "f16", "i32"];

export function isDType(s: string): s is DType {
  return (DTYPES as readonly string[]).includes(s);
}

export function isFloat(d: DType): boolean {
  return d === "f32" || d === "f16";
}

export function byteSize(d: DType): number {
  return d === "f16" ? 2 : 4;
}
