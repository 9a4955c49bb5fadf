/**
 * The results of `disco experiment`: the cells' figures grouped into rows (mean and sample
 * standard deviation over seeds), the Markdown table, and the plot: grouped bars with error
 * bars, one group per student, one bar per method, the bar at the mean and the whisker at
 * +-1 standard deviation; kNN top-1 over linear top-1, in one static SVG (no script, no font
 * from elsewhere), built on the axis helpers of `svg.ts`.
 */
import { classColor, escapeXml, formatTick, niceTicks, tickStep } from './svg.js';

/** What one finished cell measured: the figures a row is made of. */
export interface CellFigures {
  /** Student name, a key of `EXPERIMENT_STUDENTS`. */
  student: string;
  /** Method name, a key of `EXPERIMENT_METHODS`. */
  method: string;
  /** The teacher's name; '-' for MoCo v2, which has none. */
  teacher: string;
  /** The seed the cell trained with. */
  seed: number;
  /** kNN top-1 of the final evaluation, a fraction in [0, 1]. */
  knnTop1: number;
  /** Linear-probe top-1 of the final evaluation, a fraction in [0, 1]. */
  linearTop1: number;
  /** Backbone parameters (the head is dropped after training). */
  parameters: number;
  /** Seconds the cell's training epochs took (evaluation not included). */
  trainSeconds: number;
}

/** A mean and a spread over seeds. */
export interface Stat {
  /** The mean of `values`. */
  mean: number;
  /** Sample standard deviation (n - 1 in the denominator); 0 for one value. */
  std: number;
  /** The values, one per seed, in the order given. */
  values: number[];
}

/** One row of the table: a student, method and teacher over its seeds. */
export interface ResultRow {
  /** Student name, a key of `EXPERIMENT_STUDENTS`. */
  student: string;
  /** Method name, a key of `EXPERIMENT_METHODS`. */
  method: string;
  /** Teacher name; '-' for MoCo v2. */
  teacher: string;
  /** The method's label (with the teacher's when the grid has several). */
  label: string;
  /** The seeds of the row's cells. */
  seeds: number[];
  /** kNN top-1 over the seeds, in percent. */
  knnTop1: Stat;
  /** Linear-probe top-1 over the seeds, in percent. */
  linearTop1: Stat;
  /** Backbone parameters of the student (the first cell's). */
  parameters: number;
  /** Training seconds per cell over the seeds. */
  trainSeconds: Stat;
}

/** Mean and sample standard deviation of `values` (n - 1; 0 when there is one value). */
export function meanStd(values: readonly number[]): Stat {
  const n = values.length;
  const mean = values.reduce((s, v) => s + v, 0) / n;
  const ss = values.reduce((s, v) => s + (v - mean) ** 2, 0);
  return { mean, std: n > 1 ? Math.sqrt(ss / (n - 1)) : 0, values: [...values] };
}

/** The table's rows: cells grouped by student, method and teacher, in the grid's order. */
export function summarise(
  cells: readonly CellFigures[],
  labelOf: (method: string) => string,
  labelTeachers: boolean,
): ResultRow[] {
  const groups = new Map<string, CellFigures[]>();
  for (const c of cells) {
    const key = `${c.student}\n${c.method}\n${c.teacher}`;
    groups.set(key, [...(groups.get(key) ?? []), c]);
  }
  return [...groups.values()].map((g) => {
    const { student, method, teacher } = g[0]!;
    const label = labelOf(method);
    return {
      student,
      method,
      teacher,
      label: labelTeachers && teacher !== '-' ? `${label} <- ${teacher}` : label,
      seeds: g.map((c) => c.seed),
      knnTop1: meanStd(g.map((c) => 100 * c.knnTop1)),
      linearTop1: meanStd(g.map((c) => 100 * c.linearTop1)),
      parameters: g[0]!.parameters,
      trainSeconds: meanStd(g.map((c) => c.trainSeconds)),
    };
  });
}

const pm = (s: Stat, digits = 2) =>
  s.values.length > 1
    ? `${s.mean.toFixed(digits)} ± ${s.std.toFixed(digits)}`
    : s.mean.toFixed(digits);

/** The Markdown table of `rows` (accuracies in %, time per cell). */
export function formatExperimentTable(rows: readonly ResultRow[]): string {
  const header = [
    'student',
    'method',
    'seeds',
    'kNN top-1 (%)',
    'linear top-1 (%)',
    'parameters',
    'training time',
  ];
  const body = rows.map((r) => [
    r.student,
    r.label,
    String(r.seeds.length),
    pm(r.knnTop1),
    pm(r.linearTop1),
    `${(r.parameters / 1e6).toFixed(2)}M`,
    `${(r.trainSeconds.mean / 60).toFixed(1)} min`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [
    line(header),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...body.map(line),
  ].join('\n');
}

/** A teacher's own figures, measured on the experiment's data. */
export interface TeacherFigures {
  name: string;
  parameters: number;
  knnTop1: number;
  linearTop1: number;
}

/** The Markdown table of the teachers (accuracies in %). */
export function formatTeacherTable(teachers: readonly TeacherFigures[]): string {
  return [
    '| teacher | parameters | kNN top-1 (%) | linear top-1 (%) |',
    '| ------- | ---------- | ------------- | ---------------- |',
    ...teachers.map(
      (t) =>
        `| ${t.name} | ${(t.parameters / 1e6).toFixed(2)}M | ${(100 * t.knnTop1).toFixed(2)} | ` +
        `${(100 * t.linearTop1).toFixed(2)} |`,
    ),
  ].join('\n');
}

/** One bar: a mean and a spread, in percent. */
export interface Bar {
  mean: number;
  std: number;
}

/** One panel's data: `values[g][s]` is group g's bar of series s (null: no such cell). */
export interface BarPanel {
  title: string;
  yLabel: string;
  values: (Bar | null)[][];
}

const PANEL_HEIGHT = 260;
const MARGIN = { left: 64, right: 16, top: 28, bottom: 40 };
const BAR_WIDTH = 18;
const GROUP_GAP = 28;
const CHAR_PX = 6.4;

/** A number for an SVG attribute: at most 2 decimals. */
function px(v: number): string {
  return String(Math.round(v * 100) / 100);
}

/** One panel at vertical offset `top`, `plotWidth` wide; returns its SVG elements. */
function panel(p: BarPanel, groups: readonly string[], top: number, plotWidth: number): string {
  const plotHeight = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom;
  const x0 = MARGIN.left;
  const y0 = top + MARGIN.top;
  // Bars start at 0; the axis ends at the round tick above the highest whisker.
  const highest = Math.max(
    1,
    ...p.values.flat().map((b) => (b && Number.isFinite(b.mean) ? b.mean + (b.std || 0) : 0)),
  );
  const step = tickStep(0, highest, 5);
  const yMax = Math.ceil(highest / step - 1e-9) * step;
  const y = (v: number) => y0 + plotHeight - (Math.max(0, v) / yMax) * plotHeight;
  const out: string[] = [
    `<text class="panel-title" x="${px(x0)}" y="${px(top + 16)}">${escapeXml(p.title)}</text>`,
    `<rect class="plot-area" x="${px(x0)}" y="${px(y0)}" width="${px(plotWidth)}" ` +
      `height="${px(plotHeight)}" fill="none" stroke="#888"/>`,
  ];
  for (const t of niceTicks(0, yMax, 5)) {
    out.push(
      `<line x1="${px(x0 - 4)}" y1="${px(y(t))}" x2="${px(x0 + plotWidth)}" y2="${px(y(t))}" ` +
        'stroke="#ddd"/>',
      `<text x="${px(x0 - 6)}" y="${px(y(t) + 4)}" text-anchor="end">${formatTick(t, step)}</text>`,
    );
  }
  out.push(
    `<text transform="translate(${px(14)} ${px(y0 + plotHeight / 2)}) rotate(-90)" ` +
      `text-anchor="middle">${escapeXml(p.yLabel)}</text>`,
  );
  const series = Math.max(1, ...p.values.map((g) => g.length));
  const groupWidth = series * BAR_WIDTH + GROUP_GAP;
  groups.forEach((name, g) => {
    const gx = x0 + GROUP_GAP / 2 + g * groupWidth;
    (p.values[g] ?? []).forEach((b, s) => {
      if (!b || !Number.isFinite(b.mean)) return;
      const bx = gx + s * BAR_WIDTH;
      const cx = bx + BAR_WIDTH / 2;
      const label = `${name}, series ${s + 1}: ${b.mean.toFixed(2)} +- ${b.std.toFixed(2)}`;
      out.push(
        `<rect class="bar" data-group="${g}" data-series="${s}" x="${px(bx + 1)}" ` +
          `y="${px(y(b.mean))}" width="${px(BAR_WIDTH - 2)}" ` +
          `height="${px(y(0) - y(b.mean))}" fill="${classColor(s)}">` +
          `<title>${escapeXml(label)}</title></rect>`,
      );
      if (b.std > 0) {
        const lo = y(b.mean - b.std);
        const hi = y(b.mean + b.std);
        out.push(
          `<path class="error-bar" d="M${px(cx)} ${px(lo)}V${px(hi)}M${px(cx - 4)} ${px(lo)}` +
            `H${px(cx + 4)}M${px(cx - 4)} ${px(hi)}H${px(cx + 4)}" stroke="#222" fill="none"/>`,
        );
      }
    });
    out.push(
      `<text x="${px(gx + (series * BAR_WIDTH) / 2)}" y="${px(y0 + plotHeight + 16)}" ` +
        `text-anchor="middle">${escapeXml(name)}</text>`,
    );
  });
  return out.join('');
}

/**
 * Grouped bars with error bars, one panel per entry of `panels` stacked top to bottom, and
 * one legend of `series` names on the right.
 * @param groups the group (student) names, the x axis.
 * @param series the series (method) names, one colour each.
 */
export function groupedBarChart(
  groups: readonly string[],
  series: readonly string[],
  panels: readonly BarPanel[],
  title: string,
): string {
  const groupWidth = Math.max(1, series.length) * BAR_WIDTH + GROUP_GAP;
  const plotWidth = Math.max(240, groups.length * groupWidth);
  const legendX = MARGIN.left + plotWidth + 24;
  const legendWidth = 36 + CHAR_PX * Math.max(0, ...series.map((s) => s.length));
  const width = legendX + legendWidth + MARGIN.right;
  const height = panels.length * PANEL_HEIGHT;
  const legend = series
    .map((name, i) => {
      const cy = MARGIN.top + 8 + i * 16;
      return (
        `<rect x="${px(legendX)}" y="${px(cy - 6)}" width="12" height="12" ` +
        `fill="${classColor(i)}"/>` +
        `<text x="${px(legendX + 18)}" y="${px(cy + 4)}">${escapeXml(name)}</text>`
      );
    })
    .join('');
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${px(width)}" height="${px(height)}" ` +
    `viewBox="0 0 ${px(width)} ${px(height)}" role="img" aria-label="${escapeXml(title)}" ` +
    'font-family="sans-serif" font-size="11">' +
    panels.map((p, i) => panel(p, groups, i * PANEL_HEIGHT, plotWidth)).join('') +
    legend +
    '</svg>\n'
  );
}

/** The plot of `rows`: one group per student, one bar per label (method, and teacher). */
export function resultsChart(rows: readonly ResultRow[], title: string): string {
  const students = [...new Set(rows.map((r) => r.student))];
  const labels = [...new Set(rows.map((r) => r.label))];
  const panelOf = (name: string, pick: (r: ResultRow) => Stat): BarPanel => ({
    title: name,
    yLabel: 'top-1 (%)',
    values: students.map((s) =>
      labels.map((l) => {
        const r = rows.find((x) => x.student === s && x.label === l);
        return r ? { mean: pick(r).mean, std: pick(r).std } : null;
      }),
    ),
  });
  return groupedBarChart(
    students,
    labels,
    [panelOf('kNN top-1', (r) => r.knnTop1), panelOf('linear top-1', (r) => r.linearTop1)],
    title,
  );
}
