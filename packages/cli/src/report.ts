/**
 * `disco report <run>`: one self-contained `report.html` for a run folder (also written at
 * the end of every run), with charts drawn here as inline SVG and inline CSS, so it opens
 * offline and needs no script, font or image from anywhere else. Sections: the run's
 * settings, its results (the student's kNN and linear top-1, and the teacher's when they are
 * known), the loss and its parts over steps, the learning rate, kNN top-1 over epochs, and a
 * 2-D map of eval embeddings coloured by class. For a `disco pipeline` folder the report is
 * the combined table of teacher and students with a link to each run's report.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { type Encoder, Rng, tf, writeFileAtomic } from '@disco/core';
import type { ImageSet } from '@disco/data';
import {
  EVAL_EMBEDDINGS_FILE,
  embeddingMap,
  mapKnnAccuracy,
  MAX_MAP_POINTS,
  readEvalEmbeddings,
  saveEvalEmbeddings,
  stratifiedSubset,
} from './embedding-map.js';
import { type ModelInfo, modelFilePath } from './model-file.js';
import {
  type Cell,
  classColor,
  escapeXml,
  htmlTable,
  lineChart,
  type LineSeries,
  scatterPlot,
} from './svg.js';

/** The report's file name in a run folder. */
export const REPORT_FILE = 'report.html';

/** A teacher's kNN and linear top-1 (fractions), and where they come from. */
export interface TeacherFigures {
  /** The teacher's name in the results table. */
  model: string;
  /** kNN top-1, a fraction in [0, 1]. */
  knnTop1: number;
  /** Linear-probe top-1, a fraction in [0, 1]. */
  linearTop1: number;
  /** One sentence: who measured them, on which data. */
  source: string;
  /** Measured on the same images as the student (then the gap is shown). */
  sameData: boolean;
}

/** Settings of `writeReport`. */
export interface ReportOptions {
  /** File to write (default `<runDir>/report.html`). */
  out?: string;
  /** The teacher's figures, when the caller measured them (the pipeline does). */
  teacher?: TeacherFigures;
  /** Layout of the embedding map (default t-SNE). */
  map?: 'tsne' | 'pca';
}

/** One `kind: "step"` or `kind: "epoch"` line of metrics.jsonl. */
export interface MetricsLine {
  /** 'step': written after every optimizer step; 'epoch': the epoch's means, at its end. */
  kind: 'step' | 'epoch';
  /** The epoch, counted from 1. */
  epoch: number;
  /** Optimizer steps done so far in the run, this one included. */
  step: number;
  /** The epoch's learning rate. */
  lr: number;
  /** The total loss. */
  loss: number;
  /** Its named parts (infonce, mse_v1, ...). */
  parts: Record<string, number>;
  /** Epoch lines: training images per second over the epoch. */
  imgPerSec?: number;
  /** Epoch lines: seconds the epoch took. */
  seconds?: number;
  /** Epoch lines: the kNN monitor's top-1 (a fraction), on epochs where it ran. */
  knnTop1?: number;
}

/** The `kind: "final"` line: the evaluation at the end of a run (NaN when not scored). */
export interface FinalLine {
  /** kNN top-1, a fraction in [0, 1]. */
  knnTop1: number;
  /** Linear-probe top-1, a fraction in [0, 1]. */
  linearTop1: number;
  /** Width of the evaluated backbone feature (NaN when the line lacks it). */
  featureDim: number;
  /** Seconds of training in the run (NaN when the line lacks it). */
  trainSeconds: number;
}

/** A run's metrics.jsonl, by kind. */
export interface RunMetrics {
  /** The step lines, in file order. */
  steps: MetricsLine[];
  /** The epoch lines, in file order. */
  epochs: MetricsLine[];
  /** The final line (the last one when there are several); null when the run has none. */
  final: FinalLine | null;
  /**
   * The number of a last line that was cut off (no newline, not JSON: the run was killed
   * while writing it) and is left out; null when the file ends whole.
   */
  tornLine: number | null;
}

const LINE_FIELDS = new Set([
  'kind',
  'epoch',
  'step',
  'lr',
  'loss',
  'imgPerSec',
  'seconds',
  'knnTop1',
]);

/**
 * Reads a run's metrics.jsonl. A last line without its newline that does not parse (a run
 * killed mid-write) is left out and reported in `tornLine`.
 * @throws naming the file and line when a line is not a JSON object of a known kind, or a
 *   field is missing or not a number
 */
export function readMetrics(path: string): RunMetrics {
  if (!existsSync(path)) throw new Error(`report: ${path}: file not found`);
  const out: RunMetrics = { steps: [], epochs: [], final: null, tornLine: null };
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.forEach((text, i) => {
    if (text.trim() === '') return;
    const where = `report: ${path} line ${i + 1}`;
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      // split() leaves '' after a final newline, so only an unterminated last line is here.
      if (i === lines.length - 1) {
        out.tornLine = i + 1;
        return;
      }
      throw new Error(`${where}: not JSON (${(err as Error).message}): ${text.slice(0, 80)}`);
    }
    if (typeof m !== 'object' || m === null || Array.isArray(m)) {
      throw new Error(`${where}: must be a JSON object, got ${text.slice(0, 80)}`);
    }
    const num = (field: string, optional = false, nullable = false): number => {
      const v = m[field];
      if (v === undefined && optional) return NaN;
      if (v === null && nullable) return NaN;
      if (typeof v !== 'number') {
        throw new Error(`${where}: field '${field}' is ${JSON.stringify(v)}: must be a number`);
      }
      return v;
    };
    if (m.kind === 'final') {
      out.final = {
        knnTop1: num('knnTop1', false, true),
        linearTop1: num('linearTop1', false, true),
        featureDim: num('featureDim', true),
        trainSeconds: num('trainSeconds', true),
      };
      return;
    }
    if (m.kind !== 'step' && m.kind !== 'epoch') {
      throw new Error(
        `${where}: field 'kind' is ${JSON.stringify(m.kind)}: must be "step", "epoch" or "final"`,
      );
    }
    const parts: Record<string, number> = {};
    // Every other number is a loss part (null: a value JSON could not hold, such as NaN).
    for (const [k, v] of Object.entries(m)) {
      if (LINE_FIELDS.has(k)) continue;
      if (typeof v === 'number') parts[k] = v;
      else if (v === null) parts[k] = NaN;
    }
    const line: MetricsLine = {
      kind: m.kind,
      epoch: num('epoch'),
      step: num('step'),
      lr: num('lr'),
      loss: num('loss'),
      parts,
    };
    if (m.kind === 'epoch') {
      for (const f of ['imgPerSec', 'seconds', 'knnTop1'] as const) {
        const v = num(f, true);
        if (!Number.isNaN(v)) line[f] = v;
      }
      out.epochs.push(line);
    } else out.steps.push(line);
  });
  return out;
}

/** The info (spec, notes) of an encoder file, read from its header alone. */
function readEncoderInfo(where: string): ModelInfo {
  const path = modelFilePath(where);
  if (!existsSync(path)) throw new Error(`${path}: file not found`);
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(8);
    readSync(fd, head, 0, 8, 0);
    const length = Number(head.readBigUInt64LE(0));
    if (!(length > 0 && length < 100 * 1024 * 1024)) {
      throw new Error(`${path}: header length ${length} is not that of a safetensors file`);
    }
    const header = Buffer.alloc(length);
    readSync(fd, header, 0, length, 8);
    const meta = (JSON.parse(header.toString('utf8')) as { __metadata__?: { info?: string } })
      .__metadata__;
    if (!meta?.info) throw new Error(`${path}: no 'info' metadata (not a DisCo encoder file)`);
    return JSON.parse(meta.info) as ModelInfo;
  } finally {
    closeSync(fd);
  }
}

/** The teacher's figures from its encoder file's notes, or why there are none. */
function teacherFromFile(file: string): TeacherFigures | string {
  let info: ModelInfo;
  try {
    info = readEncoderInfo(file);
  } catch (err) {
    return `the teacher ${file} could not be read (${(err as Error).message})`;
  }
  const notes = info.notes ?? {};
  const knn = notes.knnTop1;
  const linear = notes.linearTop1;
  if (typeof knn !== 'number' || typeof linear !== 'number') {
    return (
      `the teacher file ${file} records no kNN/linear figures; ` +
      `\`disco eval ${file}\` measures them`
    );
  }
  const images =
    typeof notes.trainImages === 'number' ? ` (${notes.trainImages} training images)` : '';
  return {
    model: `${info.spec.arch} teacher`,
    knnTop1: knn,
    linearTop1: linear,
    source:
      `from the notes of ${file}: measured at the end of the run that trained it${images}, ` +
      'possibly on other data than this run, so the gap is not shown',
    sameData: false,
  };
}

/**
 * The teacher row of the `disco pipeline` results.json one folder up, for a pipeline's
 * student run (`student-*`): measured on the same images as the student. Null otherwise.
 */
function teacherFromPipeline(runDir: string): TeacherFigures | null {
  const file = join(runDir, '..', 'results.json');
  if (!basename(resolve(runDir)).startsWith('student-') || !existsSync(file)) return null;
  try {
    const rows = (JSON.parse(readFileSync(file, 'utf8')) as { rows?: unknown }).rows;
    const row = Array.isArray(rows)
      ? (rows as Record<string, unknown>[]).find(
          (r) => typeof r?.model === 'string' && r.model.includes(' teacher'),
        )
      : undefined;
    if (!row || typeof row.knnTop1 !== 'number' || typeof row.linearTop1 !== 'number') {
      return null;
    }
    return {
      model: String(row.model),
      knnTop1: row.knnTop1,
      linearTop1: row.linearTop1,
      source: `from ${resolve(file)}: measured by disco pipeline on the same images as this run`,
      sameData: true,
    };
  } catch {
    return null; // not a pipeline's results.json: the teacher file's notes are used instead
  }
}

function pct(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? '-' : (100 * x).toFixed(2);
}

function seconds(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return '-';
  return s >= 3600
    ? `${(s / 3600).toFixed(1)} h`
    : s >= 60
      ? `${(s / 60).toFixed(1)} min`
      : `${s.toFixed(0)} s`;
}

/**
 * An exponential moving average with its start-up bias removed, spanning about a 25th of
 * the series (no smoothing below 38 points). A missing value stays missing and is skipped.
 */
export function smooth(values: readonly number[]): number[] {
  const span = Math.max(1, Math.round(values.length / 25));
  const keep = 1 - 2 / (span + 1);
  let avg = 0;
  let weight = 0;
  return values.map((v) => {
    if (!Number.isFinite(v)) return NaN;
    avg = keep * avg + (1 - keep) * v;
    weight = keep * weight + (1 - keep);
    return avg / weight;
  });
}

/**
 * At most about `max` points of a series: the lowest and the highest of each of `max / 2`
 * consecutive buckets, in order, so peaks and the extremes survive.
 */
export function downsample(
  x: readonly number[],
  y: readonly number[],
  max: number,
): { x: number[]; y: number[] } {
  if (y.length <= max) return { x: [...x], y: [...y] };
  const buckets = Math.floor(max / 2);
  const out = { x: [] as number[], y: [] as number[] };
  for (let b = 0; b < buckets; b++) {
    const from = Math.floor((b * y.length) / buckets);
    const to = Math.floor(((b + 1) * y.length) / buckets);
    let lo = from;
    let hi = from;
    for (let i = from; i < to; i++) {
      if (y[i]! < y[lo]!) lo = i;
      if (y[i]! > y[hi]!) hi = i;
    }
    for (const i of lo <= hi ? [lo, hi] : [hi, lo]) {
      if (out.x.length > 0 && out.x[out.x.length - 1] === x[i]) continue;
      out.x.push(x[i]!);
      out.y.push(y[i]!);
    }
  }
  return out;
}

const MAX_LINE_POINTS = 1200;

function lossChart(steps: readonly MetricsLine[]): string {
  const partNames = [...new Set(steps.flatMap((s) => Object.keys(s.parts)))];
  // With one part equal to the total (MoCo v2 alone), the total is drawn once.
  const onlyPart =
    partNames.length === 1 && steps.every((s) => s.parts[partNames[0]!] === s.loss)
      ? partNames[0]
      : null;
  const keys = onlyPart ? ['loss'] : ['loss', ...partNames];
  const x = steps.map((s) => s.step);
  const series: LineSeries[] = [];
  keys.forEach((key, i) => {
    const y = steps.map((s) => (key === 'loss' ? s.loss : (s.parts[key] ?? NaN)));
    const name = onlyPart ? `loss (${onlyPart})` : key;
    const raw = downsample(x, y, MAX_LINE_POINTS);
    const smoothed = downsample(x, smooth(y), MAX_LINE_POINTS);
    const color = classColor(i, keys.length);
    series.push(
      { name, kind: 'raw', ...raw, color, width: 1, opacity: 0.3, legend: false },
      { name, kind: 'smoothed', ...smoothed, color, width: 2 },
    );
  });
  return lineChart(series, { title: 'loss parts over steps', xLabel: 'step', yLabel: 'loss' });
}

function lrChart(steps: readonly MetricsLine[]): string {
  const line = downsample(
    steps.map((s) => s.step),
    steps.map((s) => s.lr),
    MAX_LINE_POINTS,
  );
  return lineChart(
    [{ name: 'lr', kind: 'raw', ...line, color: classColor(0), width: 2, stepped: true }],
    {
      title: 'learning rate',
      xLabel: 'step',
      yLabel: 'learning rate',
      height: 240,
    },
  );
}

function knnChart(metrics: RunMetrics): { svg: string; points: number } {
  const monitored = metrics.epochs.filter((e) => e.knnTop1 !== undefined);
  const x = monitored.map((e) => e.epoch);
  const y = monitored.map((e) => 100 * e.knnTop1!);
  const lastEpoch = metrics.epochs.at(-1)?.epoch ?? 0;
  const series: LineSeries[] = [];
  const final = metrics.final;
  if (final && Number.isFinite(final.knnTop1)) {
    x.push(lastEpoch);
    y.push(100 * final.knnTop1);
  }
  series.push({
    name: 'kNN top-1',
    kind: 'knn',
    x,
    y,
    color: classColor(0),
    width: 2,
    markers: true,
  });
  if (final && Number.isFinite(final.linearTop1)) {
    series.push({
      name: 'linear top-1 (final)',
      kind: 'linear',
      x: [lastEpoch],
      y: [100 * final.linearTop1],
      color: classColor(1, 2),
      markers: true,
    });
  }
  const svg = lineChart(series, {
    title: 'kNN top-1 over epochs',
    xLabel: 'epoch',
    yLabel: 'top-1 (%)',
    xInteger: true,
    height: 240,
    yPad: 0.08,
  });
  return { svg, points: x.length };
}

function mapSection(
  runDir: string,
  metrics: RunMetrics,
  opts: ReportOptions,
  seed: number,
): string {
  const file = join(runDir, EVAL_EMBEDDINGS_FILE);
  if (!existsSync(file)) {
    return (
      `<p class="note">No ${EVAL_EMBEDDINGS_FILE} in the run folder: it is written at the end ` +
      'of a run on labelled data (a run that has not finished, ran before reports existed or ' +
      'trained on unlabelled images has none).</p>'
    );
  }
  let e: ReturnType<typeof readEvalEmbeddings>;
  try {
    e = readEvalEmbeddings(file);
  } catch (err) {
    // The rest of the report stands without the map.
    return `<p class="note">${escapeXml(`No map: ${(err as Error).message}`)}</p>`;
  }
  let rows: Int32Array = Int32Array.from({ length: e.count }, (_, i) => i);
  if (e.count > MAX_MAP_POINTS) rows = stratifiedSubset(e.labels, MAX_MAP_POINTS, new Rng(seed));
  const features = new Float32Array(rows.length * e.dim);
  rows.forEach((r, i) => features.set(e.features.subarray(r * e.dim, (r + 1) * e.dim), i * e.dim));
  const labels = Int32Array.from(rows, (r) => e.labels[r]!);
  const started = Date.now();
  const map = embeddingMap(features, rows.length, e.dim, { method: opts.map, seed });
  const took = (Date.now() - started) / 1000;
  const x = Float64Array.from(labels, (_, i) => map.coords[2 * i]!);
  const y = Float64Array.from(labels, (_, i) => map.coords[2 * i + 1]!);
  const agreement = mapKnnAccuracy(map.coords, labels, 5);
  const svg = scatterPlot(x, y, labels, e.classNames, { title: 'embedding map' });
  const epochs = metrics.epochs.at(-1)?.epoch;
  return [
    svg,
    `<p class="note">${escapeXml(
      `${rows.length} test images (a class-stratified sample), their ${e.dim}-d backbone ` +
        `features at the end of the run${epochs !== undefined ? ` (epoch ${epochs})` : ''}. ` +
        `Layout: ${map.description}; ${took.toFixed(1)} s.`,
    )}</p>`,
    `<p class="note">${escapeXml(
      `A 5-nearest-neighbour vote on the map itself (leave-one-out) gets the class right for ` +
        `${pct(agreement)}% of the points: how well the layout keeps the classes apart, not a ` +
        'score of the model (that is the kNN top-1 above).',
    )}</p>`,
  ].join('\n');
}

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
  max-width: 1000px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.sub, .note { color: #555; } .note { max-width: 760px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }
th { background: #f4f4f4; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
svg text { font: 11px system-ui, sans-serif; fill: #333; } svg .axis-label { font-size: 12px; }
svg .plot-area { fill: #fcfcfc; stroke: #bbb; } svg .grid { stroke: #eaeaea; }
`;

function page(title: string, subtitle: string, sections: [string, string, string][]): string {
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>${escapeXml(title)}</title>`,
    `<style>${STYLE}</style></head><body>`,
    `<h1>${escapeXml(title)}</h1>`,
    `<p class="sub">${escapeXml(subtitle)}</p>`,
    ...sections.map(
      ([id, heading, body]) =>
        `<section id="${id}"><h2>${escapeXml(heading)}</h2>\n${body}\n</section>`,
    ),
    '</body></html>',
    '',
  ].join('\n');
}

function readJson(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new Error(`report: ${path}: file not found`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`report: ${path}: not valid JSON (${(err as Error).message})`);
  }
}

/** How the report names a config's `method`. */
const METHOD_NAMES: Record<string, string> = {
  moco: 'MoCo v2',
  disco: 'DisCo',
  seed: 'SEED',
  'compress-1q': 'CompRess-1q',
  'compress-2q': 'CompRess-2q',
};

/** The HTML report of one run folder. */
function runReport(runDir: string, opts: ReportOptions): string {
  const cfg = readJson(join(runDir, 'config.json'));
  const metrics = readMetrics(join(runDir, 'metrics.jsonl'));
  const method = METHOD_NAMES[String(cfg.method)] ?? String(cfg.method);
  const arch = String(cfg.arch ?? '?');
  const seed = typeof cfg.seed === 'number' ? cfg.seed : 0;
  const last = metrics.epochs.at(-1);
  const sections: [string, string, string][] = [];

  // Settings: config.json as it is, then what the metrics say about the run.
  const trainSeconds =
    metrics.final?.trainSeconds ?? metrics.epochs.reduce((s, e) => s + (e.seconds ?? 0), 0);
  const speeds = metrics.epochs.map((e) => e.imgPerSec).filter((v): v is number => v !== undefined);
  const facts: Cell[][] = [
    ['epochs done', `${last?.epoch ?? 0} of ${String(cfg.epochs ?? '?')}`],
    ['optimizer steps', String(metrics.steps.at(-1)?.step ?? 0)],
    ['training time', seconds(trainSeconds)],
    [
      'images/s (mean over epochs)',
      speeds.length ? (speeds.reduce((s, v) => s + v, 0) / speeds.length).toFixed(1) : '-',
    ],
  ];
  const settings = Object.entries(cfg).map(([k, v]): Cell[] => [
    k,
    typeof v === 'string' ? v : JSON.stringify(v),
  ]);
  sections.push([
    'settings',
    'Run settings',
    htmlTable(['setting', 'value'], [...settings, ...facts]),
  ]);

  // Results: the student, and the teacher when its figures are known.
  const final = metrics.final;
  let teacher: TeacherFigures | string | null = opts.teacher ?? teacherFromPipeline(runDir);
  if (!teacher && cfg.method !== 'moco') {
    teacher =
      typeof cfg.teacher === 'string'
        ? teacherFromFile(cfg.teacher)
        : 'the config names no teacher';
  }
  const rows: Cell[][] = [];
  if (final) {
    rows.push([
      `${arch} ${method} (this run)`,
      'student',
      pct(final.knnTop1),
      pct(final.linearTop1),
      Number.isFinite(final.featureDim) ? String(final.featureDim) : '-',
    ]);
  } else {
    const knn = [...metrics.epochs].reverse().find((e) => e.knnTop1 !== undefined);
    rows.push([
      `${arch} ${method} (this run, unfinished)`,
      'student',
      knn ? pct(knn.knnTop1) : '-',
      '-',
      '-',
    ]);
  }
  const notes: string[] = [];
  if (metrics.tornLine !== null) {
    notes.push(
      `Line ${metrics.tornLine} of metrics.jsonl was cut off (the run stopped while writing ` +
        'it) and is left out.',
    );
  }
  if (!final)
    notes.push(
      'The run has no final evaluation yet; the kNN figure is the last monitored epoch, if any.',
    );
  if (teacher && typeof teacher !== 'string') {
    rows.push([teacher.model, 'teacher', pct(teacher.knnTop1), pct(teacher.linearTop1), '-']);
    if (teacher.sameData && final) {
      const gap = (a: number, b: number) =>
        Number.isFinite(a - b) ? (100 * (a - b)).toFixed(2) : '-';
      rows.push([
        'student - teacher (points)',
        'gap',
        gap(final.knnTop1, teacher.knnTop1),
        gap(final.linearTop1, teacher.linearTop1),
        '-',
      ]);
    }
    notes.push(`Teacher figures ${teacher.source}.`);
  } else if (typeof teacher === 'string') {
    notes.push(`No teacher figures: ${teacher}.`);
  }
  const results =
    htmlTable(['model', 'role', 'kNN top-1 (%)', 'linear top-1 (%)', 'feature dim'], rows) +
    notes.map((n) => `\n<p class="note">${escapeXml(n)}</p>`).join('');
  sections.push(['results', 'Results', results]);

  // Curves.
  if (metrics.steps.length > 0) {
    sections.push([
      'loss',
      'Loss parts over steps',
      `${lossChart(metrics.steps)}\n` +
        '<p class="note">Faint: every step; bold: smoothed (exponential moving average).</p>',
    ]);
    sections.push(['lr', 'Learning rate', lrChart(metrics.steps)]);
  } else {
    sections.push([
      'loss',
      'Loss parts over steps',
      '<p class="note">No step lines in metrics.jsonl yet.</p>',
    ]);
  }
  const knn = knnChart(metrics);
  const knnNote = metrics.epochs.some((e) => e.knnTop1 !== undefined)
    ? ''
    : '\n<p class="note">The kNN monitor was off during training (knnEvery 0): only the ' +
      'final evaluation is shown; --knn-every 1 draws a curve.</p>';
  sections.push([
    'knn',
    'kNN top-1 over epochs',
    knn.points > 0 ? knn.svg + knnNote : '<p class="note">No kNN figure in metrics.jsonl yet.</p>',
  ]);

  sections.push(['map', 'Embedding map', mapSection(runDir, metrics, opts, seed)]);
  return page(
    `DisCo run report: ${basename(resolve(runDir))}`,
    `${method} training of ${arch}, run folder ${resolve(runDir)}, ` +
      `report written ${new Date().toISOString()}`,
    sections,
  );
}

/** The HTML report of a `disco pipeline` folder: the combined table and the runs' reports. */
function pipelineReport(dir: string): string {
  const results = readJson(join(dir, 'results.json'));
  const rows = results.rows as {
    model: string;
    parameters: number;
    knnTop1: number | null;
    linearTop1: number | null;
    trainSeconds: number | null;
  }[];
  const bad = Array.isArray(rows)
    ? rows.findIndex((r) => typeof r?.model !== 'string' || typeof r.parameters !== 'number')
    : -1;
  if (!Array.isArray(rows) || bad >= 0) {
    throw new Error(
      `report: ${join(dir, 'results.json')}: field 'rows' must be an array of ` +
        `{ model, parameters, knnTop1, linearTop1, trainSeconds }` +
        (bad >= 0 ? `; row ${bad} is ${JSON.stringify(rows[bad])}` : ''),
    );
  }
  const num = (v: number | null) => (v === null ? NaN : v);
  const table = htmlTable(
    ['model', 'parameters', 'kNN top-1 (%)', 'linear top-1 (%)', 'training time'],
    rows.map((r) => [
      r.model,
      `${(r.parameters / 1e6).toFixed(2)}M`,
      pct(num(r.knnTop1)),
      pct(num(r.linearTop1)),
      seconds(r.trainSeconds),
    ]),
  );
  const teacher = rows.find((r) => r.model.includes(' teacher'));
  const students = rows.filter(
    (r) => !r.model.includes(' teacher') && !r.model.includes('(random init)'),
  );
  const gaps = teacher
    ? htmlTable(
        ['student', 'kNN: student - teacher (points)', 'linear: student - teacher (points)'],
        students.map((s) => [
          s.model,
          (100 * (num(s.knnTop1) - num(teacher.knnTop1))).toFixed(2),
          (100 * (num(s.linearTop1) - num(teacher.linearTop1))).toFixed(2),
        ]),
      )
    : '<p class="note">results.json has no teacher row.</p>';
  const links = ['teacher', 'student-moco', 'student-disco']
    .filter((sub) => existsSync(join(dir, sub, REPORT_FILE)))
    .map((sub) => `<li><a href="${sub}/${REPORT_FILE}">${sub}</a></li>`);
  return page(
    `DisCo pipeline report: ${basename(resolve(dir))}`,
    `seed ${String(results.seed ?? '?')}, folder ${resolve(dir)}, ` +
      `report written ${new Date().toISOString()}`,
    [
      [
        'results',
        'Teacher and students',
        `${table}\n<p class="note">disco pipeline evaluates every row the same way, on the ` +
          'same images.</p>',
      ],
      ['gap', 'Gap to the teacher', gaps],
      [
        'runs',
        'Reports of the runs',
        links.length
          ? `<ul>${links.join('')}</ul>`
          : '<p class="note">No run reports found beside results.json.</p>',
      ],
    ],
  );
}

/**
 * Writes the report of a run folder (config.json, metrics.jsonl, optionally
 * eval-embeddings.safetensors) or of a `disco pipeline` folder (results.json) atomically.
 * Returns the path written.
 * @throws naming the file (and line) that is missing or unreadable
 */
export function writeReport(runDir: string, opts: ReportOptions = {}): string {
  const isRun = existsSync(join(runDir, 'config.json'));
  if (!isRun && !existsSync(join(runDir, 'results.json'))) {
    throw new Error(
      `report: ${runDir} is neither a run folder (config.json, metrics.jsonl) nor a pipeline ` +
        'folder (results.json)',
    );
  }
  const html = isRun ? runReport(runDir, opts) : pipelineReport(runDir);
  const out = opts.out ?? join(runDir, REPORT_FILE);
  writeFileAtomic(out, html);
  return out;
}

/** `writeReport`, with a failure logged as a warning instead of thrown. */
export function writeReportOrWarn(
  runDir: string,
  opts: ReportOptions,
  log: (line: string) => void,
): void {
  try {
    log(`report: ${writeReport(runDir, opts)}`);
  } catch (err) {
    log(`warning: the report of ${runDir} was not written: ${(err as Error).message}`);
  }
}

/**
 * The end of a run: a class-stratified sample of the test set is embedded with the final
 * backbone into `eval-embeddings.safetensors`, then `report.html` is written. Neither can
 * fail the run: a failure is logged as a warning.
 */
export async function finishRunReport(args: {
  runDir: string;
  backbone: Encoder;
  /** Labelled test images; none for unlabelled data (then the report has no map). */
  test: ImageSet | null | undefined;
  preprocess: (x: tf.Tensor4D) => tf.Tensor4D;
  seed: number;
  log: (line: string) => void;
}): Promise<void> {
  // Without a new file there must be no file: an older run's map would pass for this one's.
  const file = join(args.runDir, EVAL_EMBEDDINGS_FILE);
  try {
    if (args.test) {
      await saveEvalEmbeddings(file, args.backbone, args.test, {
        preprocess: args.preprocess,
        seed: args.seed,
      });
    } else rmSync(file, { force: true });
  } catch (err) {
    args.log(
      `warning: eval embeddings not saved, the report has no map: ${(err as Error).message}`,
    );
    try {
      rmSync(file, { force: true });
    } catch {
      // Left as it is; the warning above has been given.
    }
  }
  writeReportOrWarn(args.runDir, {}, args.log);
}
