/**
 * The run report: the chart writer's scales and ticks, PCA and t-SNE on data whose answer is
 * known, the report of a synthetic run folder (known metrics, known pixel positions, known
 * table cells, escaping, errors), and one real tiny training run that writes its report.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Rng, writeSafetensors } from '@disco/core';
import { loadFashionMnist } from '@disco/data';
import {
  embeddingMap,
  mapKnnAccuracy,
  pca,
  perplexityRow,
  readEvalEmbeddings,
  stratifiedSubset,
  symmetricEigen,
  tsne,
} from '../src/embedding-map.js';
import { downsample, readMetrics, smooth, writeReport } from '../src/report.js';
import { escapeXml, formatTick, htmlTable, lineChart, niceTicks } from '../src/svg.js';
import { TRAIN_DEFAULTS } from '../src/config.js';
import { train } from '../src/train.js';

/** `count` points per class around `classes` centres `spread` apart in `dim` dimensions. */
function clusters(classes: number, count: number, dim: number, spread: number, seed = 1) {
  const rng = new Rng(seed);
  const n = classes * count;
  const features = new Float32Array(n * dim);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % classes;
    labels[i] = c;
    for (let j = 0; j < dim; j++) {
      // Centre c sits at `spread` on axis c (and its sign on axis c + classes).
      const centre = j === c ? spread : j === c + classes ? -spread : 0;
      features[i * dim + j] = centre + rng.normal();
    }
  }
  return { features, labels, n };
}

/** The inside of `<section id="id">`. */
function section(html: string, id: string): string {
  const m = html.match(new RegExp(`<section id="${id}">([\\s\\S]*?)</section>`));
  expect(m, `section ${id}`).not.toBeNull();
  return m![1]!;
}

/** The body rows of the HTML tables in `html`, as cell texts. */
function tableRows(html: string): string[][] {
  return [...html.matchAll(/<tr>(.*?)<\/tr>/g)]
    .filter((m) => !m[1]!.startsWith('<th'))
    .map((m) => [...m[1]!.matchAll(/<td[^>]*>(.*?)<\/td>/g)].map((c) => c[1]!));
}

/** The plot area rectangle of an SVG chart. */
function plotArea(svg: string) {
  const m = svg.match(
    /<rect class="plot-area" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"/,
  );
  expect(m).not.toBeNull();
  const [x, y, width, height] = m!.slice(1).map(Number) as [number, number, number, number];
  return { x, y, width, height };
}

/** The points of the polylines of one series (and kind), joined in order. */
function points(svg: string, series: string, kind: string): [number, number][] {
  const re = new RegExp(
    `<polyline class="series" data-series="${series}" data-kind="${kind}"[^>]*points="([^"]*)"`,
    'g',
  );
  const out: [number, number][] = [];
  for (const m of svg.matchAll(re)) {
    for (const p of m[1]!.split(' ')) out.push(p.split(',').map(Number) as [number, number]);
  }
  return out;
}

describe('svg charts', () => {
  it('picks round-number ticks and formats them with the decimals the step needs', () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0.015, 0.06)).toEqual([0.02, 0.03, 0.04, 0.05, 0.06]);
    expect(niceTicks(1, 24, 5)).toEqual([5, 10, 15, 20]);
    expect(niceTicks(1, 3, 5, true)).toEqual([1, 2, 3]);
    expect(formatTick(0.03, 0.01)).toBe('0.03');
    expect(formatTick(15, 5)).toBe('15');
  });

  it('maps a series onto the plot area: minimum on the bottom edge, maximum on the top', () => {
    const svg = lineChart(
      [{ name: 's', kind: 'raw', x: [10, 20, 30, 40], y: [2, 6, 4, 10], color: 'red' }],
      { title: 't', xLabel: 'x', yLabel: 'y' },
    );
    const a = plotArea(svg);
    const p = points(svg, 's', 'raw');
    const bottom = a.y + a.height;
    // x 10..40 spans the width; y 2..10 spans the height, upwards.
    const want: [number, number][] = [
      [a.x, bottom],
      [a.x + a.width / 3, bottom - a.height / 2],
      [a.x + (2 * a.width) / 3, bottom - a.height / 4],
      [a.x + a.width, a.y],
    ];
    expect(p).toHaveLength(4);
    p.forEach(([x, y], i) => {
      expect(x).toBeCloseTo(want[i]![0], 1);
      expect(y).toBeCloseTo(want[i]![1], 1);
    });
  });

  it('escapes text from data and breaks a line at a missing value', () => {
    expect(escapeXml(`a<b & "c" 'd'>`)).toBe('a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;');
    const svg = lineChart([{ name: 'x<y&z', x: [1, 2, 3, 4], y: [1, NaN, 3, 4], color: 'blue' }], {
      title: 'a<b',
      xLabel: 'x',
      yLabel: 'y',
    });
    expect(svg).toContain('x&lt;y&amp;z');
    expect(svg).not.toContain('x<y');
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    const table = htmlTable(['model', 'kNN'], [['<b>', '12.50']]);
    expect(table).toContain('<td>&lt;b&gt;</td><td class="num">12.50</td>');
  });
});

describe('embedding map', () => {
  it('finds the eigenvalues and eigenvectors of a small symmetric matrix', () => {
    // [[2, 1], [1, 2]]: eigenvalues 3 and 1, eigenvectors (1, 1) and (1, -1) over sqrt 2.
    const { values, vectors } = symmetricEigen([2, 1, 1, 2], 2);
    expect(values[0]).toBeCloseTo(3, 12);
    expect(values[1]).toBeCloseTo(1, 12);
    expect(Math.abs(vectors[0]!)).toBeCloseTo(Math.SQRT1_2, 12);
    expect(vectors[0]! * vectors[2]!).toBeCloseTo(0.5, 12); // same sign: (1, 1)
  });

  it('recovers the variances and directions of data with known principal axes', () => {
    // 400 rows, 80 columns: column j has standard deviation 5, 3, 2 for j < 3, 0.1 after.
    const n = 400;
    const d = 80;
    const rng = new Rng(3);
    const sd = (j: number) => (j === 0 ? 5 : j === 1 ? 3 : j === 2 ? 2 : 0.1);
    const x = new Float64Array(n * d);
    for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) x[i * d + j] = sd(j) * rng.normal();
    const r = pca(x, n, d, 3, { iterations: 2 });
    // Sample variances of 400 draws are within ~15% of the true ones.
    expect(r.variances[0]! / 25).toBeGreaterThan(0.85);
    expect(r.variances[0]! / 25).toBeLessThan(1.15);
    expect(r.variances[1]! / 9).toBeGreaterThan(0.85);
    expect(r.variances[1]! / 9).toBeLessThan(1.15);
    expect(r.variances[2]! / 4).toBeGreaterThan(0.85);
    expect(r.variances[2]! / 4).toBeLessThan(1.15);
    expect(r.totalVariance).toBeGreaterThan(0.85 * (25 + 9 + 4 + 77 * 0.01));
    // The first score is column 0 (up to sign): correlation near 1.
    let sxy = 0;
    let sxx = 0;
    let syy = 0;
    for (let i = 0; i < n; i++) {
      const a = r.scores[i * 3]!;
      const b = x[i * d]!;
      sxy += a * b;
      sxx += a * a;
      syy += b * b;
    }
    expect(Math.abs(sxy) / Math.sqrt(sxx * syy)).toBeGreaterThan(0.99);
  });

  it('sets each point’s Gaussian to the asked perplexity', () => {
    const dist = Float64Array.from({ length: 89 }, (_, j) => 0.5 + j * 0.1);
    const p = new Float64Array(89);
    perplexityRow(dist, 30, p);
    const entropy = -p.reduce((s, v) => s + (v > 0 ? v * Math.log(v) : 0), 0);
    expect(entropy).toBeCloseTo(Math.log(30), 5);
    expect(p.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 12);
  });

  it('separates three Gaussian clusters, with t-SNE and with PCA', () => {
    const { features, labels, n } = clusters(3, 60, 20, 6);
    const t = embeddingMap(features, n, 20, { seed: 0 });
    expect(t.method).toBe('tsne');
    expect(mapKnnAccuracy(t.coords, labels, 5)).toBeGreaterThan(0.9);
    const p = embeddingMap(features, n, 20, { method: 'pca' });
    expect(p.method).toBe('pca');
    expect(mapKnnAccuracy(p.coords, labels, 5)).toBeGreaterThan(0.9);
    // Seeded: the same input gives the same map.
    const again = embeddingMap(features, n, 20, { seed: 0 });
    expect([...again.coords]).toEqual([...t.coords]);
    // And a random labelling is not separated (the check can fail).
    const shuffled = new Rng(9).permutation(n).map((i) => labels[i]!);
    expect(mapKnnAccuracy(t.coords, shuffled, 5)).toBeLessThan(0.6);
  });

  it('places 2000 points with exact t-SNE in a few seconds', () => {
    const { features, labels, n } = clusters(10, 200, 50, 4, 2);
    const started = Date.now();
    const m = embeddingMap(features, n, 50, { seed: 0 });
    const seconds = (Date.now() - started) / 1000;
    expect(mapKnnAccuracy(m.coords, labels, 5)).toBeGreaterThan(0.9);
    // A few seconds on one free core; generous for a shared machine.
    expect(seconds).toBeLessThan(30);
  });

  it('t-SNE refuses data whose size disagrees with n x d', () => {
    expect(() => tsne(new Float64Array(10), 4, 3)).toThrow(/n x d = 4 x 3 = 12 values, got 10/);
  });

  it('keeps classes as even as the labels allow when sampling', () => {
    const labels = [...Array(100).fill(0), ...Array(50).fill(1), ...Array(10).fill(2)];
    const picked = stratifiedSubset(labels, 60, new Rng(0));
    const counts = [0, 0, 0];
    for (const i of picked) counts[labels[i]!]!++;
    expect(counts).toEqual([25, 25, 10]);
    expect([...picked]).toEqual([...picked].sort((a, b) => a - b));
    expect([...stratifiedSubset(labels, 60, new Rng(0))]).toEqual([...picked]);
  });
});

describe('report helpers', () => {
  it('smooths with a debiased moving average and keeps extremes when downsampling', () => {
    expect(smooth([3, 1, 2])).toEqual([3, 1, 2]); // 25 points or fewer: unchanged
    // 50 points: span 2, weight 2/3 on the new value; 0 then 3 gives 2 / (8/9) = 2.25.
    const s = smooth([0, 3, ...Array(48).fill(3)]);
    expect(s[0]).toBe(0);
    expect(s[1]).toBeCloseTo(2.25, 12);
    const x = Array.from({ length: 5000 }, (_, i) => i);
    const y = x.map((i) => (i === 1234 ? 100 : i === 4321 ? -100 : Math.sin(i / 50)));
    const d = downsample(x, y, 1000);
    expect(d.y.length).toBeLessThanOrEqual(1000);
    expect(Math.max(...d.y)).toBe(100);
    expect(Math.min(...d.y)).toBe(-100);
    expect(d.x[d.y.indexOf(100)]).toBe(1234);
  });
});

/** A run folder with known metrics: 4 epochs of 5 steps, DisCo, three separable classes. */
function syntheticRun(opts: { teacherNotes?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'disco-report-'));
  const teacher = join(dir, 'teacher.safetensors');
  const info = {
    spec: { arch: 'resnet18', backbone: {}, hiddenDim: 2048, dim: 128 },
    imageSize: 28,
    mean: [0.286],
    std: [0.353],
    notes:
      opts.teacherNotes === false ? {} : { knnTop1: 0.78, linearTop1: 0.85, trainImages: 60000 },
  };
  writeSafetensors(teacher, new Map([['w', { shape: [1], values: new Float32Array([0]) }]]), {
    format: 'disco-encoder/1',
    info: JSON.stringify(info),
  });
  const cfg = { ...TRAIN_DEFAULTS, method: 'disco', arch: 'mobilenet_v3_small', epochs: 4 };
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ ...cfg, teacher, data: 'runs/<a&b>' }, null, 2),
  );
  const lrs = [0.06, 0.0512, 0.03, 0.0088];
  const lines: string[] = [];
  for (let step = 1; step <= 20; step++) {
    const epoch = Math.ceil(step / 5);
    const infonce = 6 - 0.1 * step; // 5.9 .. 4.0
    const mse = 0.5 + 0.05 * (20 - step); // 1.45 .. 0.5: the lowest value of all
    const loss = infonce + 2 * mse; // 8.8 .. 5.0: the highest
    lines.push(
      JSON.stringify({
        kind: 'step',
        epoch,
        step,
        lr: lrs[epoch - 1],
        loss,
        infonce,
        mse_v1: mse,
        mse_v2: mse,
      }),
    );
    if (step % 5 === 0) {
      const knn = [0.4, 0.5, 0.55, undefined][epoch - 1];
      lines.push(
        JSON.stringify({
          kind: 'epoch',
          epoch,
          step,
          lr: lrs[epoch - 1],
          loss,
          infonce,
          mse_v1: mse,
          mse_v2: mse,
          imgPerSec: 100,
          seconds: 2,
          knnTop1: knn,
        }),
      );
    }
  }
  lines.push(
    JSON.stringify({
      kind: 'final',
      knnTop1: 0.6123,
      linearTop1: 0.7045,
      featureDim: 16,
      trainSeconds: 8,
    }),
  );
  writeFileSync(join(dir, 'metrics.jsonl'), `${lines.join('\n')}\n`);

  const { features, labels, n } = clusters(3, 60, 16, 6);
  writeSafetensors(
    join(dir, 'eval-embeddings.safetensors'),
    new Map([
      ['features', { shape: [n, 16], values: features, dtype: 'F16' as const }],
      ['labels', { shape: [n], values: labels }],
      ['indices', { shape: [n], values: Int32Array.from({ length: n }, (_, i) => i) }],
    ]),
    { format: 'disco-eval-embeddings/1', classNames: JSON.stringify(['a<b', 'c&d', 'plain']) },
  );
  return { dir, teacher, lrs };
}

describe('writeReport', () => {
  it('writes one self-contained HTML file with a chart per section and the known numbers', () => {
    const { dir, lrs } = syntheticRun();
    const path = writeReport(dir);
    expect(path).toBe(join(dir, 'report.html'));
    const html = readFileSync(path, 'utf8');

    // Nothing from elsewhere: no URL, no script, no external file.
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/<script|src=|href=|@import|url\(/);
    for (const id of ['loss', 'lr', 'knn', 'map']) {
      expect(section(html, id).match(/<svg/g), id).toHaveLength(1);
    }

    // Learning rate: a staircase from 0.06 at step 1 (top left) to 0.0088 at step 20 (bottom
    // right); epoch 3's 0.03 lies at the matching height.
    const lr = section(html, 'lr');
    const a = plotArea(lr);
    const p = points(lr, 'lr', 'raw');
    expect(p[0]![0]).toBeCloseTo(a.x, 1);
    expect(p[0]![1]).toBeCloseTo(a.y, 1);
    expect(p.at(-1)![0]).toBeCloseTo(a.x + a.width, 1);
    expect(p.at(-1)![1]).toBeCloseTo(a.y + a.height, 1);
    const step11 = p.filter(([x]) => Math.abs(x - (a.x + (10 / 19) * a.width)) < 0.01);
    const y03 = a.y + a.height - ((0.03 - lrs[3]!) / (lrs[0]! - lrs[3]!)) * a.height;
    expect(step11.map(([, y]) => y)).toEqual([
      expect.closeTo(a.y + a.height - ((lrs[1]! - lrs[3]!) / (lrs[0]! - lrs[3]!)) * a.height, 1),
      expect.closeTo(y03, 1),
    ]);

    // Loss: the total's raw maximum (step 1) on the top edge, the consistency term's raw
    // minimum (step 20) on the bottom edge; a smoothed line and a legend entry per part.
    const loss = section(html, 'loss');
    const la = plotArea(loss);
    const total = points(loss, 'loss', 'raw');
    expect(total).toHaveLength(20);
    expect(total[0]![0]).toBeCloseTo(la.x, 1);
    expect(total[0]![1]).toBeCloseTo(la.y, 1);
    const mse = points(loss, 'mse_v1', 'raw');
    expect(mse.at(-1)![0]).toBeCloseTo(la.x + la.width, 1);
    expect(mse.at(-1)![1]).toBeCloseTo(la.y + la.height, 1);
    for (const part of ['loss', 'infonce', 'mse_v1', 'mse_v2']) {
      expect(points(loss, part, 'smoothed')).toHaveLength(20);
      expect(loss).toContain(`>${part}</text>`);
    }

    // kNN over epochs: three monitored epochs and the final figure.
    expect(points(section(html, 'knn'), 'kNN top-1', 'knn')).toHaveLength(4);

    // Results: the student's final figures and the teacher's from its file's notes.
    const results = section(html, 'results');
    expect(tableRows(results)).toEqual([
      ['mobilenet_v3_small DisCo (this run)', 'student', '61.23', '70.45', '16'],
      ['resnet18 teacher', 'teacher', '78.00', '85.00', '-'],
    ]);
    expect(results).toContain('<td class="num">61.23</td>');
    expect(results).toContain('60000 training images');
    expect(results).not.toContain('student - teacher');

    // Settings: config values escaped; the map: one group per class, names escaped.
    expect(section(html, 'settings')).toContain('<td>runs/&lt;a&amp;b&gt;</td>');
    const map = section(html, 'map');
    expect(map.match(/<g class="points"/g)).toHaveLength(3);
    expect(map.match(/<circle /g)).toHaveLength(180);
    expect(map).toContain('>a&lt;b (60)</text>');
    expect(map).toContain('>c&amp;d (60)</text>');
    expect(html).not.toContain('a<b');
  });

  it('shows the gap to a teacher measured on the same data, says when it knows none', () => {
    const { dir } = syntheticRun({ teacherNotes: false });
    const unknown = readFileSync(writeReport(dir), 'utf8');
    expect(section(unknown, 'results')).toMatch(/records no kNN\/linear figures/);
    const out = join(dir, 'other.html');
    writeReport(dir, {
      out,
      map: 'pca',
      teacher: {
        model: 'r18 teacher',
        knnTop1: 0.7,
        linearTop1: 0.8,
        source: 'measured here',
        sameData: true,
      },
    });
    const html = readFileSync(out, 'utf8');
    expect(tableRows(section(html, 'results'))[2]).toEqual([
      'student - teacher (points)',
      'gap',
      '-8.77',
      '-9.55',
      '-',
    ]);
    expect(section(html, 'map')).toContain('PCA: the first two principal components');
  });

  it('names the file and line of a garbled or missing metrics.jsonl', () => {
    const { dir } = syntheticRun();
    const metrics = join(dir, 'metrics.jsonl');
    const good = readFileSync(metrics, 'utf8').split('\n');
    writeFileSync(metrics, [good[0], good[1], '{"kind":"step", oops', ...good.slice(3)].join('\n'));
    expect(() => writeReport(dir)).toThrow(/metrics\.jsonl line 3: not JSON/);
    writeFileSync(metrics, [good[0], good[1].replace(/"loss":[\d.]+/, '"loss":"abc"')].join('\n'));
    expect(() => writeReport(dir)).toThrow(
      /metrics\.jsonl line 2: field 'loss' is "abc": must be a number/,
    );
    writeFileSync(metrics, '{"kind":"nap","step":1}\n');
    expect(() => readMetrics(metrics)).toThrow(/line 1: field 'kind' is "nap"/);
    writeFileSync(metrics, '');
    expect(readMetrics(metrics)).toEqual({ steps: [], epochs: [], final: null, tornLine: null });
    // A last line cut off mid-write (no newline) is left out, and the report says so.
    writeFileSync(metrics, `${good.slice(0, 4).join('\n')}\n{"kind":"step","epo`);
    expect(readMetrics(metrics).tornLine).toBe(5);
    expect(readMetrics(metrics).steps).toHaveLength(4);
    expect(section(readFileSync(writeReport(dir), 'utf8'), 'results')).toContain(
      'Line 5 of metrics.jsonl was cut off',
    );
    const empty = mkdtempSync(join(tmpdir(), 'disco-report-empty-'));
    writeFileSync(join(empty, 'config.json'), '{}');
    expect(() => writeReport(empty)).toThrow(/metrics\.jsonl: file not found/);
    expect(() => writeReport(join(empty, 'nothing'))).toThrow(/neither a run folder/);
  });

  it('writes the pipeline report: every row, the gap to the teacher, links to run reports', () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-report-pipe-'));
    const rows = [
      {
        model: 'mobilenet_v3_small (random init)',
        parameters: 1e6,
        knnTop1: 0.3,
        linearTop1: 0.4,
        trainSeconds: null,
      },
      {
        model: 'resnet18 teacher (MoCo v2)',
        parameters: 11e6,
        knnTop1: 0.78,
        linearTop1: 0.85,
        trainSeconds: null,
      },
      {
        model: 'mobilenet_v3_small MoCo v2',
        parameters: 1e6,
        knnTop1: 0.6,
        linearTop1: 0.7,
        trainSeconds: 90,
      },
      {
        model: 'mobilenet_v3_small DisCo',
        parameters: 1e6,
        knnTop1: 0.7,
        linearTop1: 0.75,
        trainSeconds: 120,
      },
    ];
    writeFileSync(join(dir, 'results.json'), JSON.stringify({ seed: 0, rows }));
    cpSync(syntheticRun().dir, join(dir, 'student-disco'), { recursive: true });
    // A student's report finds the teacher's figures in the results.json beside it.
    const student = readFileSync(writeReport(join(dir, 'student-disco')), 'utf8');
    expect(tableRows(section(student, 'results'))).toEqual([
      ['mobilenet_v3_small DisCo (this run)', 'student', '61.23', '70.45', '16'],
      ['resnet18 teacher (MoCo v2)', 'teacher', '78.00', '85.00', '-'],
      ['student - teacher (points)', 'gap', '-16.77', '-14.55', '-'],
    ]);
    const html = readFileSync(writeReport(dir), 'utf8');
    expect(tableRows(section(html, 'results'))).toEqual([
      ['mobilenet_v3_small (random init)', '1.00M', '30.00', '40.00', '-'],
      ['resnet18 teacher (MoCo v2)', '11.00M', '78.00', '85.00', '-'],
      ['mobilenet_v3_small MoCo v2', '1.00M', '60.00', '70.00', '1.5 min'],
      ['mobilenet_v3_small DisCo', '1.00M', '70.00', '75.00', '2.0 min'],
    ]);
    expect(tableRows(section(html, 'gap'))).toEqual([
      ['mobilenet_v3_small MoCo v2', '-18.00', '-15.00'],
      ['mobilenet_v3_small DisCo', '-8.00', '-10.00'],
    ]);
    expect(section(html, 'runs')).toContain('<a href="student-disco/report.html">');
    expect(section(html, 'runs')).not.toContain('student-moco');
    expect(html).not.toMatch(/https?:\/\//);
  });
});

describe('a real run', () => {
  it('writes eval embeddings and report.html at the end of train()', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-report-run-'));
    const log: string[] = [];
    const r = await train(
      {
        ...TRAIN_DEFAULTS,
        method: 'moco',
        arch: 'mobilenet_v3_small',
        widthMultiplier: 0.25,
        hiddenDim: 32,
        dim: 16,
        epochs: 2,
        batchSize: 8,
        bnGroupSize: 4,
        queueSize: 32,
        knnEvery: 1,
      },
      {
        runDir: dir,
        quiet: true,
        log: (l) => log.push(l),
        train: loadFashionMnist({ split: 'train', limit: 24 }),
        test: loadFashionMnist({ split: 'test', limit: 40 }),
      },
    );
    expect(log.join('\n')).toContain(`report: ${join(dir, 'report.html')}`);
    expect(log.join('\n')).not.toMatch(/warning/);
    const e = readEvalEmbeddings(join(dir, 'eval-embeddings.safetensors'));
    expect([e.count, e.dim]).toEqual([40, r.built.backbone.outDim]);
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(existsSync(join(dir, 'report.html'))).toBe(true);
    expect(section(html, 'results')).toContain(`>${(100 * r.eval.knnTop1).toFixed(2)}<`);
    expect(section(html, 'map').match(/<circle /g)).toHaveLength(40);
    // 2 epochs of 24 / 8 = 3 steps: 6 points per loss line, kNN after epoch 1 and the final.
    expect(points(section(html, 'loss'), 'loss \\(infonce\\)', 'raw')).toHaveLength(6);
    expect(points(section(html, 'knn'), 'kNN top-1', 'knn')).toHaveLength(2);
    r.built.encoder.params.dispose();
  });
});
