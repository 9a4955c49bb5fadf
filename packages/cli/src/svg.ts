/**
 * A small writer of static charts for the run report: line charts (axes with round-number
 * ticks, a legend), class-coloured scatter plots and HTML tables, as strings of inline SVG
 * and HTML that need no script, font or file from anywhere else. Every text that comes from
 * data (series names, class names, cells) is escaped.
 *
 * Coordinates: a chart's plot area is the `<rect class="plot-area">` it draws; a value at the
 * low end of an axis's domain maps to the area's left (x) or bottom (y) edge, the high end to
 * its right or top edge. Domains are the data's extent, not padded to ticks, so a series'
 * minimum and maximum lie on the frame.
 */

/** Escapes `&`, `<`, `>`, `"` and `'` for use in HTML or SVG text and attribute values. */
export function escapeXml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** A number for an SVG attribute: at most 2 decimals, no trailing zeros. */
function px(v: number): string {
  return String(Math.round(v * 100) / 100);
}

/**
 * The spacing of round-number ticks for `[lo, hi]`: 1, 2 or 5 times a power of ten, the
 * smallest that gives at most about `count` intervals.
 */
export function tickStep(lo: number, hi: number, count = 5): number {
  const span = hi - lo;
  if (!(span > 0) || !Number.isFinite(span)) return 1;
  const raw = span / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const residual = raw / magnitude;
  const factor = residual <= 1 ? 1 : residual <= 2 ? 2 : residual <= 5 ? 5 : 10;
  return factor * magnitude;
}

/**
 * Round-number tick values inside `[lo, hi]` (both ends included when they are multiples of
 * the step), `step` from `tickStep`. With `integer`, the step is at least 1.
 */
export function niceTicks(lo: number, hi: number, count = 5, integer = false): number[] {
  let step = tickStep(lo, hi, count);
  if (integer) step = Math.max(1, Math.round(step));
  const first = Math.ceil(lo / step - 1e-9);
  const last = Math.floor(hi / step + 1e-9);
  const ticks: number[] = [];
  for (let k = first; k <= last; k++) ticks.push(Number((k * step).toPrecision(12)));
  return ticks;
}

/** A tick label: as many decimals as the step needs; exponent form for very large or small. */
export function formatTick(value: number, step: number): string {
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs >= 1e6 || (abs < 1e-3 && step < 1e-3)) return value.toExponential(1);
  const decimals = Math.max(0, Math.min(8, -Math.floor(Math.log10(step) + 1e-9)));
  return value.toFixed(decimals);
}

/**
 * The colour of class (or series) `i` of `count`: up to 12, hues evenly spaced round the
 * colour wheel; beyond, hues spread by the golden angle (any number of classes, neighbours
 * far apart). The lightness alternates between two levels.
 */
export function classColor(i: number, count = 0): string {
  const step = count > 0 && count <= 12 ? 360 / count : 137.508;
  const hue = Math.round((210 + i * step) % 360);
  const light = i % 2 === 0 ? 42 : 58;
  return `hsl(${hue} 70% ${light}%)`;
}

/** One line of a line chart. */
export interface LineSeries {
  /** Shown in the legend and written as `data-series`. */
  name: string;
  x: ArrayLike<number>;
  /** Values; a non-finite value breaks the line. */
  y: ArrayLike<number>;
  /** CSS colour. */
  color: string;
  /** Stroke width in px (default 1.5). */
  width?: number;
  /** Stroke opacity (default 1). */
  opacity?: number;
  /** A circle at each point, for short series such as one value per epoch. */
  markers?: boolean;
  /** Listed in the legend (default true). */
  legend?: boolean;
  /** A free tag written as `data-kind` (for example `raw` or `smoothed`). */
  kind?: string;
  /** Drawn as a staircase: each value holds until the next point (a per-epoch setting). */
  stepped?: boolean;
}

/** Size and labels of a chart. */
export interface ChartOptions {
  /** Read by screen readers (`aria-label`). */
  title: string;
  xLabel: string;
  yLabel: string;
  /** Total width in px, legend included (default 720). */
  width?: number;
  /** Total height in px (default 300). */
  height?: number;
  /** Ticks on whole numbers only on the x axis (epochs). */
  xInteger?: boolean;
  /** Tick label of a y value (default `formatTick`). */
  yFormat?: (value: number, step: number) => string;
  /**
   * Room added below and above the y extent, as a fraction of it (default 0: the extremes
   * lie on the frame); markers need some so they are not cut in half.
   */
  yPad?: number;
}

/** The plot area of a chart, in px from the top-left corner of its SVG. */
export interface PlotArea {
  x: number;
  y: number;
  width: number;
  height: number;
}

const MARGIN = { left: 64, right: 16, top: 12, bottom: 44 };
/** Rough width of one character of 11 px sans-serif, for sizing the legend. */
const CHAR_PX = 6.4;

/** The extent of the finite values of several arrays; a zero-width extent is widened. */
function extent(arrays: ArrayLike<number>[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) {
      const v = a[i]!;
      if (!Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (lo === Infinity) return [0, 1];
  if (hi - lo <= 1e-12 * Math.max(1, Math.abs(lo))) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.05 : 0.5;
    return [lo - pad, hi + pad];
  }
  return [lo, hi];
}

/** A linear map from `[d0, d1]` to `[r0, r1]`. */
function scale(d0: number, d1: number, r0: number, r1: number): (v: number) => number {
  const k = (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

function legend(entries: { name: string; color: string }[], x: number, y: number): string {
  return entries
    .map((e, i) => {
      const cy = y + 8 + i * 16;
      return (
        `<line x1="${px(x)}" y1="${px(cy)}" x2="${px(x + 16)}" y2="${px(cy)}" ` +
        `stroke="${e.color}" stroke-width="3"/>` +
        `<text x="${px(x + 22)}" y="${px(cy + 4)}">${escapeXml(e.name)}</text>`
      );
    })
    .join('');
}

function legendWidth(names: string[]): number {
  return names.length === 0 ? 0 : 36 + CHAR_PX * Math.max(...names.map((n) => n.length));
}

/**
 * A line chart as an `<svg>` element: one polyline per series (`class="series"`, with
 * `data-series` and `data-kind`), axes with round-number ticks and grid lines, axis labels,
 * and a legend at the right.
 */
export function lineChart(series: readonly LineSeries[], opts: ChartOptions): string {
  const width = opts.width ?? 720;
  const height = opts.height ?? 300;
  const shown = series.filter((s) => s.legend !== false);
  const legendW = legendWidth(shown.map((s) => s.name));
  const area: PlotArea = {
    x: MARGIN.left,
    y: MARGIN.top,
    width: width - MARGIN.left - MARGIN.right - legendW,
    height: height - MARGIN.top - MARGIN.bottom,
  };
  const [x0, x1] = extent(series.map((s) => s.x));
  const [lo, hi] = extent(series.map((s) => s.y));
  const pad = (opts.yPad ?? 0) * (hi - lo);
  const [y0, y1] = [lo - pad, hi + pad];
  const sx = scale(x0, x1, area.x, area.x + area.width);
  const sy = scale(y0, y1, area.y + area.height, area.y);
  const yFormat = opts.yFormat ?? formatTick;

  const out: string[] = [
    `<svg class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `role="img" aria-label="${escapeXml(opts.title)}">`,
    `<rect class="plot-area" x="${px(area.x)}" y="${px(area.y)}" width="${px(area.width)}" ` +
      `height="${px(area.height)}"/>`,
  ];

  // Axes: grid lines and labels at round-number ticks.
  const bottom = area.y + area.height;
  const xStep = tickStep(x0, x1, Math.max(2, Math.floor(area.width / 90)));
  for (const t of niceTicks(x0, x1, Math.max(2, Math.floor(area.width / 90)), opts.xInteger)) {
    const x = px(sx(t));
    out.push(
      `<line class="grid" x1="${x}" y1="${px(area.y)}" x2="${x}" y2="${px(bottom)}"/>`,
      `<text class="tick" x="${x}" y="${px(bottom + 16)}" text-anchor="middle">` +
        `${escapeXml(formatTick(t, opts.xInteger ? Math.max(1, xStep) : xStep))}</text>`,
    );
  }
  const yStep = tickStep(y0, y1, 5);
  for (const t of niceTicks(y0, y1, 5)) {
    const y = px(sy(t));
    out.push(
      `<line class="grid" x1="${px(area.x)}" y1="${y}" x2="${px(area.x + area.width)}" y2="${y}"/>`,
      `<text class="tick" x="${px(area.x - 6)}" y="${px(sy(t) + 4)}" text-anchor="end">` +
        `${escapeXml(yFormat(t, yStep))}</text>`,
    );
  }
  out.push(
    `<text class="axis-label" x="${px(area.x + area.width / 2)}" y="${px(height - 6)}" ` +
      `text-anchor="middle">${escapeXml(opts.xLabel)}</text>`,
    `<text class="axis-label" transform="translate(14 ${px(area.y + area.height / 2)}) ` +
      `rotate(-90)" text-anchor="middle">${escapeXml(opts.yLabel)}</text>`,
  );

  // Series: one polyline per unbroken run of finite points.
  for (const s of series) {
    const attrs =
      `class="series" data-series="${escapeXml(s.name)}" data-kind="${escapeXml(s.kind ?? '')}" ` +
      `fill="none" stroke="${s.color}" stroke-width="${s.width ?? 1.5}"` +
      (s.opacity !== undefined ? ` stroke-opacity="${s.opacity}"` : '');
    let run: string[] = [];
    const flush = () => {
      if (run.length > 0) out.push(`<polyline ${attrs} points="${run.join(' ')}"/>`);
      run = [];
    };
    for (let i = 0; i < s.y.length; i++) {
      const x = s.x[i]!;
      const y = s.y[i]!;
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        flush();
        continue;
      }
      if (s.stepped && i > 0 && run.length > 0) run.push(`${px(sx(x))},${px(sy(s.y[i - 1]!))}`);
      run.push(`${px(sx(x))},${px(sy(y))}`);
      if (s.markers) {
        out.push(
          `<circle class="marker" cx="${px(sx(x))}" cy="${px(sy(y))}" r="3" fill="${s.color}"/>`,
        );
      }
    }
    flush();
  }

  out.push(legend(shown, area.x + area.width + 16, area.y), '</svg>');
  return out.join('\n');
}

/** Size of a scatter plot. */
export interface ScatterOptions {
  /** Read by screen readers (`aria-label`). */
  title: string;
  /** Side of the square plot area in px (default 480). */
  size?: number;
  /** Point radius in px (default 2). */
  radius?: number;
}

/**
 * A scatter plot of points coloured by class, as an `<svg>` element: equal scales on both
 * axes (distances on a 2-D map keep their proportions), no ticks (map units mean nothing),
 * one `<g class="points" data-class="c">` of circles per class and a legend of the class
 * names with their counts.
 * @param x, y point coordinates, `[n]` each
 * @param classes class index of each point, `[n]`, in `[0, classNames.length)`
 * @throws when the arrays differ in length or a class index is out of range
 */
export function scatterPlot(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  classes: ArrayLike<number>,
  classNames: readonly string[],
  opts: ScatterOptions,
): string {
  const n = x.length;
  if (y.length !== n || classes.length !== n) {
    throw new Error(
      `scatterPlot: x, y and classes must have one entry per point, got ${n}, ${y.length} ` +
        `and ${classes.length}`,
    );
  }
  const size = opts.size ?? 480;
  const radius = opts.radius ?? 2;
  const counts = new Array<number>(classNames.length).fill(0);
  for (let i = 0; i < n; i++) {
    const c = classes[i]!;
    if (!(Number.isInteger(c) && c >= 0 && c < classNames.length)) {
      throw new Error(
        `scatterPlot: class of point ${i} is ${c}, outside [0, ${classNames.length})`,
      );
    }
    counts[c]!++;
  }
  const names = classNames.map((c, i) => `${c} (${counts[i]})`);
  const legendW = legendWidth(names);
  const pad = 8;
  const area: PlotArea = { x: pad, y: pad, width: size, height: size };
  const width = size + 2 * pad + legendW + 8;
  const height = Math.max(size + 2 * pad, 16 * names.length + 2 * pad);

  // One scale for both axes: the larger extent fills the square, the other is centred.
  const [ax0, ax1] = extent([x]);
  const [ay0, ay1] = extent([y]);
  const span = Math.max(ax1 - ax0, ay1 - ay0);
  const cx = (ax0 + ax1) / 2;
  const cy = (ay0 + ay1) / 2;
  const inner = size - 2 * radius;
  const k = inner / span;
  const sx = (v: number) => area.x + radius + inner / 2 + (v - cx) * k;
  const sy = (v: number) => area.y + radius + inner / 2 - (v - cy) * k;

  const out: string[] = [
    `<svg class="map" width="${px(width)}" height="${px(height)}" ` +
      `viewBox="0 0 ${px(width)} ${px(height)}" role="img" aria-label="${escapeXml(opts.title)}">`,
    `<rect class="plot-area" x="${area.x}" y="${area.y}" width="${size}" height="${size}"/>`,
  ];
  for (let c = 0; c < classNames.length; c++) {
    if (counts[c] === 0) continue;
    const circles: string[] = [];
    for (let i = 0; i < n; i++) {
      if (classes[i] !== c) continue;
      circles.push(`<circle cx="${px(sx(x[i]!))}" cy="${px(sy(y[i]!))}" r="${radius}"/>`);
    }
    const fill = classColor(c, classNames.length);
    out.push(
      `<g class="points" data-class="${c}" fill="${fill}" fill-opacity="0.75">` +
        `${circles.join('')}</g>`,
    );
  }
  const entries = names.map((name, i) => ({ name, color: classColor(i, classNames.length) }));
  out.push(legend(entries, area.x + size + 16, area.y), '</svg>');
  return out.join('\n');
}

/** A table cell: text (escaped), or a number shown as given by the caller's formatting. */
export type Cell = string | number;

/**
 * An HTML `<table>`: a header row and body rows, every cell escaped; columns whose body
 * cells are all numbers (or numeric strings, optionally ending in %, k or M) are right-aligned.
 */
export function htmlTable(header: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const numeric = header.map(
    (_, i) =>
      rows.length > 0 &&
      rows.every((r) => {
        const v = r[i];
        return typeof v === 'number' || (typeof v === 'string' && /^[-+]?[\d.]+[%kM]?$/.test(v));
      }),
  );
  const cell = (tag: 'th' | 'td', v: Cell | undefined, i: number) =>
    `<${tag}${numeric[i] ? ' class="num"' : ''}>${escapeXml(String(v ?? ''))}</${tag}>`;
  return [
    '<table>',
    `<thead><tr>${header.map((h, i) => cell('th', h, i)).join('')}</tr></thead>`,
    '<tbody>',
    ...rows.map((r) => `<tr>${header.map((_, i) => cell('td', r[i], i)).join('')}</tr>`),
    '</tbody>',
    '</table>',
  ].join('\n');
}
