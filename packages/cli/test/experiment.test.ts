/**
 * `disco experiment`: a tiny grid (MoCo v2 and SEED for one student, seeds 0 and 1, 2 steps
 * each) on the cpu backend, in this process. The table's means and spreads are checked
 * against the cells' own result files, a second run skips the finished cells, and a cell cut
 * back to its first checkpoint resumes to the same numbers.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '@disco/core';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashionMnistSubsetDir } from '@disco/data';
import { listCheckpoints } from '../src/checkpoint.js';
import {
  type CellResult,
  type ExperimentGrid,
  type ExperimentOptions,
  queueSizeFor,
  runExperiment,
} from '../src/experiment.js';
import { meanStd } from '../src/experiment-plot.js';
import { buildEncoder, saveModelFile } from '../src/model-file.js';

const work = mkdtempSync(join(tmpdir(), 'disco-experiment-'));
const out = join(work, 'exp');

const GRID: ExperimentGrid = {
  name: 'tiny',
  about: 'two methods, one student',
  students: ['mobilenet_v3_small'],
  methods: ['moco', 'seed'],
  teachers: [],
  epochs: 2,
  limit: 8,
};

/** The first `count` images or labels of a shipped split, as an uncompressed IDX file. */
function cutIdx(from: string, to: string, count: number, header: number, bytesEach: number) {
  const all = gunzipSync(readFileSync(join(fashionMnistSubsetDir(), `${from}.gz`)));
  const bytes = Buffer.from(all.subarray(0, header + count * bytesEach));
  bytes.writeUInt32BE(count, 4);
  writeFileSync(join(to, from), bytes);
}

let options: ExperimentOptions;
const logged: string[] = [];

describe('disco experiment (cpu backend, in-process)', () => {
  beforeAll(() => {
    const data = join(work, 'data');
    mkdirSync(data);
    cutIdx('train-images-idx3-ubyte', data, 64, 16, 28 * 28);
    cutIdx('train-labels-idx1-ubyte', data, 64, 8, 1);
    cutIdx('t10k-images-idx3-ubyte', data, 32, 16, 28 * 28);
    cutIdx('t10k-labels-idx1-ubyte', data, 32, 8, 1);
    const spec = {
      arch: 'resnet18',
      backbone: { inChannels: 1, widthMultiplier: 0.25 },
      hiddenDim: 32,
      dim: 16,
    };
    const t = buildEncoder(spec, new Rng(11));
    const teacher = join(work, 'teacher.safetensors');
    saveModelFile(teacher, t.encoder, {
      spec,
      imageSize: 28,
      mean: [...FASHION_MNIST_MEAN],
      std: [...FASHION_MNIST_STD],
    });
    t.encoder.params.dispose();
    options = {
      grid: GRID,
      out,
      seeds: [0, 1],
      data,
      teachers: { tiny: teacher },
      // 2 epochs of one step of 8 images; a checkpoint after each.
      config: {
        widthMultiplier: 0.25,
        output: 'pooled',
        hiddenDim: 32,
        dim: 16,
        batchSize: 8,
        bnGroupSize: 4,
        queueSize: 16,
        checkpointEvery: 1,
        keepCheckpoints: 4,
      },
      quiet: true,
      log: (line) => logged.push(line),
    };
  });

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('computes mean and sample standard deviation by hand', () => {
    expect(meanStd([70, 72, 74])).toEqual({ mean: 72, std: 2, values: [70, 72, 74] });
    expect(meanStd([0.5])).toEqual({ mean: 0.5, std: 0, values: [0.5] });
    // K: a tenth of the images in whole batches, at least one batch, at most 4096.
    expect([queueSizeFor(5000, 64), queueSizeFor(60000, 64), queueSizeFor(100, 64)]).toEqual([
      512, 4096, 64,
    ]);
  });

  it('a dry run lists the cells and the estimated time and trains nothing', async () => {
    const lines: string[] = [];
    expect(await runExperiment({ ...options, dryRun: true, log: (l) => lines.push(l) })).toEqual(
      [],
    );
    const cells = lines.filter((l) => l.startsWith('  mobilenet_v3_small.'));
    expect(cells.map((l) => l.trim().split(/\s+/)[0])).toEqual([
      'mobilenet_v3_small.moco.-.seed0',
      'mobilenet_v3_small.moco.-.seed1',
      'mobilenet_v3_small.seed.tiny.seed0',
      'mobilenet_v3_small.seed.tiny.seed1',
    ]);
    expect(cells.every((l) => l.includes('to run'))).toBe(true);
    expect(lines.at(-1)).toMatch(
      /^estimated [\d.]+ min at the costs measured on the wasm backend with 1 thread/,
    );
    expect(existsSync(out)).toBe(false);
  });

  it('refuses unknown names before training, listing the known ones', async () => {
    await expect(runExperiment({ ...options, grid: 'papertable' })).rejects.toThrow(
      "experiment: unknown grid 'papertable'; known: paper-table, bottleneck, teacher-size",
    );
    await expect(runExperiment({ ...options, methods: ['sed'] })).rejects.toThrow(
      /unknown method 'sed'; known: moco, seed, compress-1q, compress-2q, disco/,
    );
  });

  it('runs the grid and writes the table of mean ± std from the cells, then skips and resumes', async () => {
    const rows = await runExperiment(options);
    const cellFile = (id: string) => join(out, 'cells', id, 'result.json');
    const cells = ['moco.-', 'seed.tiny'].flatMap((m) =>
      [0, 1].map((s) => {
        const c = JSON.parse(
          readFileSync(cellFile(`mobilenet_v3_small.${m}.seed${s}`), 'utf8'),
        ) as CellResult;
        expect(c.seed).toBe(s);
        return c;
      }),
    );
    // The arithmetic, redone in float64 from the cells' own files.
    const json = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    const md = readFileSync(join(out, 'results.md'), 'utf8');
    expect(rows.map((r) => r.label)).toEqual(['MoCo v2', 'SEED']);
    for (const [i, method] of ['moco', 'seed'].entries()) {
      const mine = cells.filter((c) => c.method === method);
      for (const key of ['knnTop1', 'linearTop1'] as const) {
        const v = mine.map((c) => 100 * c[key]);
        const mean = (v[0]! + v[1]!) / 2;
        const std = Math.sqrt(((v[0]! - mean) ** 2 + (v[1]! - mean) ** 2) / (2 - 1));
        expect(json.rows[i][key].mean).toBeCloseTo(mean, 10);
        expect(json.rows[i][key].std).toBeCloseTo(std, 10);
        expect(md).toContain(`${mean.toFixed(2)} ± ${std.toFixed(2)}`);
      }
      expect(json.rows[i].parameters).toBe(mine[0]!.parameters);
      expect(json.rows[i].trainSeconds.mean).toBeCloseTo(
        (mine[0]!.trainSeconds + mine[1]!.trainSeconds) / 2,
        10,
      );
    }
    expect(json.cells).toHaveLength(4);
    expect(md).toMatch(/\| mobilenet_v3_small \| SEED {4}\| 2 {5}\|/);
    expect(md).toMatch(/\| tiny \| [\d.]+M \| [\d.]+ \| [\d.]+ \|/);
    // The plot: one bar per row and panel (kNN, linear).
    const svg = readFileSync(join(out, 'results.svg'), 'utf8');
    expect(svg.match(/class="bar"/g)).toHaveLength(4);

    // A second run skips every finished cell: nothing is rewritten.
    const seed1 = cellFile('mobilenet_v3_small.seed.tiny.seed1');
    const before = readFileSync(seed1, 'utf8');
    const mtimes = cells.map((c) => statSync(cellFile(c.id)).mtimeMs);
    logged.length = 0;
    await runExperiment(options);
    expect(logged.filter((l) => l.endsWith(': finished, skipped'))).toHaveLength(4);
    expect(cells.map((c) => statSync(cellFile(c.id)).mtimeMs)).toEqual(mtimes);

    // A cell cut back to its first checkpoint (as if killed after step 1) resumes from it
    // and ends where it ended before.
    const dir = join(out, 'cells', 'mobilenet_v3_small.seed.tiny.seed1');
    const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8');
    const [first, ...later] = listCheckpoints(dir);
    expect(first).toMatch(/ckpt-e0001-s000001\.safetensors$/);
    for (const f of later) rmSync(f);
    rmSync(seed1);
    logged.length = 0;
    await runExperiment(options);
    expect(logged.filter((l) => l.endsWith(': finished, skipped'))).toHaveLength(3);
    expect(
      logged.some((l) => /^\[4\/4\] mobilenet_v3_small\.seed\.tiny\.seed1: resuming/.test(l)),
    ).toBe(true);
    expect(logged.some((l) => /resumed from \S+ckpt-e0001-s000001\.safetensors/.test(l))).toBe(
      true,
    );
    const strip = (text: string) =>
      text
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => {
          const { imgPerSec, seconds, trainSeconds, ...rest } = JSON.parse(l);
          void [imgPerSec, seconds, trainSeconds];
          return rest;
        });
    expect(strip(readFileSync(join(dir, 'metrics.jsonl'), 'utf8'))).toEqual(strip(metrics));
    const again = JSON.parse(readFileSync(seed1, 'utf8'));
    const old = JSON.parse(before);
    expect([again.knnTop1, again.linearTop1]).toEqual([old.knnTop1, old.linearTop1]);
  });
});
