/** A bench report as a person reads it: one table (figure, kiln, peer, kiln vs peer), the reasons
 *  for every skipped figure as footnotes, then what was compared with what. */
import { FIGURES } from "./figures.ts";
import type { BenchReport, Pair } from "./run.ts";

/** Three significant digits, without exponents for the magnitudes a bench produces. */
export function formatValue(v: number): string {
  if (v >= 1000) return v.toFixed(0);
  if (v >= 100) return v.toFixed(1);
  if (v >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

export const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;

const formatCount = (n: number) =>
  n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : `${n}`;

const pad = (s: string, n: number) => s.padEnd(n);
const lpad = (s: string, n: number) => s.padStart(n);

export function formatReport(r: BenchReport): string {
  const m = r.model;
  const k = r.backends.kiln;
  const p = r.backends.peer;
  const lines = [
    `kiln bench: GPT-2-shaped, ${plural(m.n_layer, "layer")}, d ${m.n_embd}, ` +
      `${plural(m.n_head, "head")}, vocab ${m.vocab_size}, ${formatCount(m.params)} params, ` +
      `random weights (seed ${m.seed})`,
    `  kiln: ${k ? `${k.name}: ${k.description}` : "(not run)"}`,
    `  peer: ${p ? `${p.name}: ${p.description}` : "(not run)"}`,
    `  machine: ${r.machine.cpus} CPUs (${r.machine.cpu}), Node ${r.machine.node}, load average ` +
      `${r.machine.load_avg.start.toFixed(1)} → ${r.machine.load_avg.end.toFixed(1)}`,
    "  " +
      (r.settings.measure.maxReps <= 1
        ? "one run per figure (--quick)"
        : `median of up to ${r.settings.measure.maxReps} runs within ~${r.settings.measure.budgetMs / 1000} s per figure (matmul: as many runs as fit)`),
    "",
  ];
  const footnotes: string[] = [];
  const cell = (v: number | null, why: string | undefined, who: string | undefined) => {
    if (v !== null) return formatValue(v);
    if (!why) return "–";
    const note = `${who}: ${why}`;
    let i = footnotes.indexOf(note);
    if (i < 0) i = footnotes.push(note) - 1;
    return `skipped [${i + 1}]`;
  };
  const header = [
    "figure",
    "unit",
    `kiln${k ? ` (${k.name})` : ""}`,
    `peer${p ? ` (${p.name})` : ""}`,
    "kiln vs peer",
  ];
  const rows: string[][] = [];
  const row = (
    label: string,
    unit: string,
    x: Pair,
    skipped: { kiln?: string; peer?: string } = {},
  ) =>
    rows.push([
      label,
      unit,
      cell(x.kiln, skipped.kiln, k?.name),
      cell(x.peer, skipped.peer, p?.name),
      x.ratio === null ? "–" : `${formatValue(x.ratio)}×`,
    ]);
  for (const f of FIGURES) {
    const fr = r.figures[f.id];
    row(fr.label, fr.unit, fr, fr.skipped);
  }
  row("peak RSS", "MB", r.rss_mb);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i].length)));
  const fmt = (x: string[]) =>
    x
      .map((c, i) => (i < 2 ? pad(c, widths[i]) : lpad(c, widths[i])))
      .join("   ")
      .trimEnd();
  lines.push(fmt(header), fmt(widths.map((w) => "-".repeat(w))), ...rows.map(fmt), "");
  lines.push("kiln vs peer: > 1 means kiln is better (more per second, fewer ms or MB).");
  lines.push(...yardstickLines(r));
  footnotes.forEach((n, i) => lines.push(`[${i + 1}] ${n}`));
  if (r.agreement)
    lines.push(
      `logits agree: max relative difference ${r.agreement.max_rel_diff.toExponential(1)} on a ` +
        `${r.agreement.tokens}-token prompt, ${r.agreement.same_argmax ? "same" : "DIFFERENT"} argmax`,
    );
  for (const b of [k, p]) if (b) for (const n of b.notes) lines.push(`note: ${n}`);
  return lines.join("\n") + "\n";
}

/** Each side's matmul kernel against the plain-JS 4×4 loop timed alternately with it in the same
 *  process (bench/yardstick.ts): a ratio that travels between machines better than GFLOP/s. */
function yardstickLines(r: BenchReport): string[] {
  const out: string[] = [];
  const sides = [
    ["kiln", r.backends.kiln],
    ["peer", r.backends.peer],
  ] as const;
  for (const f of FIGURES) {
    const fr = r.figures[f.id];
    const y = fr.yardstick;
    if (!y) continue;
    const parts: string[] = [];
    for (const [side, b] of sides) {
      const kernel = fr[side];
      const yard = y[side];
      if (!b || kernel === null || yard === null) continue;
      parts.push(
        `${b.name} ${formatValue(kernel)} vs ${formatValue(yard)} = ${formatValue(kernel / yard)}×`,
      );
    }
    if (parts.length) out.push(`  ${fr.label}: ${parts.join("; ")}`);
  }
  if (out.length === 0) return [];
  return [
    "matmul kernel vs plain-JS 4×4 register blocking (peers.md's plain-JS yardstick), GFLOP/s, " +
      "timed alternately in the same process:",
    ...out,
  ];
}
