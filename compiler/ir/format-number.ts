/** Numbers in text IR: the shortest text that reads back to the same float64. */
export function formatNumber(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  return Object.is(x, -0) ? "-0" : String(x);
}
