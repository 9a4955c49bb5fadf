/** The results table `disco pipeline` prints and writes as Markdown. */

export interface ResultRow {
  /** The model's label, e.g. `mobilenet_v3_small DisCo` or `resnet18 (random init)`. */
  model: string;
  /** Backbone parameters, the projection head left out (shown in millions). */
  parameters: number;
  /** kNN top-1, a fraction in [0, 1] (shown in percent). */
  knnTop1: number;
  /** Linear-probe top-1, a fraction in [0, 1] (shown in percent). */
  linearTop1: number;
  /** Training seconds; null for rows that were not trained here. */
  trainSeconds: number | null;
}

function millions(n: number): string {
  return `${(n / 1e6).toFixed(2)}M`;
}

function pct(x: number): string {
  return `${(100 * x).toFixed(2)}`;
}

function duration(s: number | null): string {
  if (s === null) return '-';
  return s >= 3600
    ? `${(s / 3600).toFixed(1)} h`
    : s >= 60
      ? `${(s / 60).toFixed(1)} min`
      : `${s.toFixed(0)} s`;
}

/** Markdown table: model, parameters, kNN top-1, linear top-1, training time. */
export function formatTable(rows: readonly ResultRow[]): string {
  const header = ['model', 'parameters', 'kNN top-1 (%)', 'linear top-1 (%)', 'training time'];
  const body = rows.map((r) => [
    r.model,
    millions(r.parameters),
    pct(r.knnTop1),
    pct(r.linearTop1),
    duration(r.trainSeconds),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [
    line(header),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...body.map(line),
  ].join('\n');
}
