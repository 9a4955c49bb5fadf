/**
 * The distillation methods of `disco distill` (DisCo and its ablations, SEED, CompRess-1q and
 * -2q) wired into `train()`: the loss parts each logs and the weight InfoNCE enters with, the
 * linear head of hidden width 0, the teacher's BatchNorm mode, refused settings, and exact
 * resume of a run whose objective has a queue of its own. Tiny networks on the cpu backend:
 * a MobileNetV3-Small at width 0.25 (16-d embedding) distilled from a random ResNet-18 at
 * width 0.25, on 16 Fashion-MNIST images (2 steps of 8).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng, tf } from '@disco/core';
import {
  FASHION_MNIST_MEAN,
  FASHION_MNIST_STD,
  fashionMnistSubsetDir,
  loadFashionMnist,
  toFloatTensor,
} from '@disco/data';
import { Teacher } from '@disco/distill';
import { listCheckpoints, readCheckpoint } from '../src/checkpoint.js';
import {
  compareResumeConfig,
  TRAIN_DEFAULTS,
  type TrainConfig,
  validateTrainConfig,
} from '../src/config.js';
import { buildEncoder, loadModelFile, saveModelFile } from '../src/model-file.js';
import { train } from '../src/train.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'disco-methods-'));
const sets = {
  train: loadFashionMnist({ split: 'train', limit: 16 }),
  test: loadFashionMnist({ split: 'test', limit: 16 }),
};
let teacherFile = '';

const TEACHER_SPEC = {
  arch: 'resnet18',
  backbone: { inChannels: 1, widthMultiplier: 0.25 },
  hiddenDim: 32,
  dim: 16,
};

function tiny(method: TrainConfig['method'], more: Partial<TrainConfig> = {}): TrainConfig {
  return {
    ...TRAIN_DEFAULTS,
    method,
    arch: 'mobilenet_v3_small',
    widthMultiplier: 0.25,
    hiddenDim: 32,
    dim: 16,
    batchSize: 8,
    bnGroupSize: 4,
    queueSize: 16,
    epochs: 1,
    seed: 3,
    ...(method !== 'moco' ? { teacher: teacherFile } : {}),
    ...more,
  };
}

type Line = Record<string, number | string | undefined>;

function metrics(dir: string): Line[] {
  return readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Line);
}

/** Trains `cfg` in-process in a new folder; returns its step lines and what it logged. */
async function run(name: string, cfg: TrainConfig) {
  const dir = join(work, name);
  const logged: string[] = [];
  const r = await train(cfg, { runDir: dir, quiet: true, log: (l) => logged.push(l), ...sets });
  const p = r.built.encoder.params;
  const head = Object.fromEntries(
    p
      .parameterNames()
      .filter((n) => n.startsWith('head'))
      .map((n) => [n, p.get(n).size]),
  );
  const featureDim = r.built.backbone.outDim;
  p.dispose();
  const steps = metrics(dir).filter((m) => m.kind === 'step');
  return { dir, steps, logged, head, featureDim };
}

const LOSS_PARTS = ['infonce', 'mse_v1', 'mse_v2', 'seed', 'compress'];
const partsOf = (m: Line) => LOSS_PARTS.filter((k) => k in m);

describe('distillation methods in train() (cpu backend)', () => {
  beforeAll(() => {
    const t = buildEncoder(TEACHER_SPEC, new Rng(11));
    teacherFile = join(work, 'teacher.safetensors');
    saveModelFile(teacherFile, t.encoder, {
      spec: TEACHER_SPEC,
      imageSize: 28,
      mean: [...FASHION_MNIST_MEAN],
      std: [...FASHION_MNIST_STD],
    });
    t.encoder.params.dispose();
  });

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const cases: [string, TrainConfig['method'], Partial<TrainConfig>, string[], number][] = [
    ['moco', 'moco', {}, ['infonce'], 1],
    ['disco', 'disco', {}, ['infonce', 'mse_v1', 'mse_v2'], 1],
    ['disco-first', 'disco', { mseViews: 'first' }, ['infonce', 'mse_v1'], 1],
    ['only-mse', 'disco', { onlyMse: true }, ['infonce', 'mse_v1', 'mse_v2'], 0],
    ['seed', 'seed', { teacherBn: 'eval' }, ['infonce', 'seed'], 0],
    ['compress-1q', 'compress-1q', { teacherBn: 'eval' }, ['infonce', 'compress'], 0],
    ['compress-2q', 'compress-2q', { teacherBn: 'eval' }, ['infonce', 'compress'], 0],
  ];
  const runs = new Map<string, Awaited<ReturnType<typeof run>>>();
  for (const [name, method, more, parts, weight] of cases) {
    it(`${name}: logs ${parts.join(', ')}, InfoNCE at weight ${weight}`, async () => {
      runs.set(name, await run(name, tiny(method, more)));
      const { steps, logged } = runs.get(name)!;
      expect(steps).toHaveLength(2);
      for (const m of steps) {
        expect(partsOf(m)).toEqual(parts);
        for (const p of parts) expect(Number(m[p])).toBeGreaterThan(0);
        // The total is the weighted sum of the parts: InfoNCE counts `weight` times.
        const others = parts.filter((p) => p !== 'infonce').reduce((s, p) => s + Number(m[p]), 0);
        const total = weight * Number(m.infonce) + others;
        expect(Math.abs(Number(m.loss) - total)).toBeLessThan(1e-5 * Math.max(1, total));
        if (weight === 0) {
          expect(m.infonceWeight).toBe(0);
          // InfoNCE is far from zero, so a total that counted it would miss by that much.
          expect(Number(m.loss) + 0.5).toBeLessThan(Number(m.loss) + Number(m.infonce));
        } else {
          expect(m.infonceWeight).toBeUndefined();
        }
      }
      const epochLine = logged.find((l) => l.startsWith('epoch 1/1'))!;
      for (const p of parts) expect(epochLine).toMatch(new RegExp(`  ${p} \\d+\\.\\d{4}`));
      expect(epochLine.includes('infonce') && epochLine.includes('(weight 0)')).toBe(weight === 0);
    });
  }

  it('hidden width 0 builds a linear head: inDim x dim weights and dim biases', async () => {
    const { head, featureDim, dir } = await run('hidden0', tiny('moco', { hiddenDim: 0 }));
    expect(head).toEqual({ 'head.weight': featureDim * 16, 'head.bias': 16 });
    expect(featureDim).toBe(144); // MobileNetV3-Small x0.25: 576 / 4 pooled channels
    // The encoder file rebuilds it.
    const back = loadModelFile(join(dir, 'encoder.safetensors'));
    expect(back.info.spec.hiddenDim).toBe(0);
    expect(back.encoder.params.parameterNames().filter((n) => n.startsWith('head'))).toHaveLength(
      2,
    );
    back.encoder.params.dispose();
  });

  it("teacher BN eval and train give different targets; the run's teacherBn reaches them", async () => {
    const file = loadModelFile(teacherFile);
    const x = toFloatTensor(sets.train.images.subarray(0, 8 * 28 * 28), 8, 28, 28, 1);
    const asTrain = new Teacher(file.encoder, 'train', 4);
    const asEval = new Teacher(file.encoder, 'eval', 4);
    const a = asTrain.embed(x);
    const b = asEval.embed(x);
    // Running statistics of a fresh network are 0 and 1, far from the batch's.
    const gap = tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!;
    expect(gap).toBeGreaterThan(1e-2);
    tf.dispose([a, b, x]);
    asTrain.dispose();
    asEval.dispose();
    file.encoder.params.dispose();

    // The 'disco' case above ran with the default, train mode.
    const tr = runs.get('disco')!;
    const ev = await run('bn-eval', tiny('disco', { teacherBn: 'eval' }));
    expect(JSON.parse(readFileSync(join(tr.dir, 'config.json'), 'utf8')).teacherBn).toBe('train');
    // Same student, views and queue: InfoNCE is the same number, the targets are not.
    expect(ev.steps[0]!.infonce).toBe(tr.steps[0]!.infonce);
    expect(Math.abs(Number(ev.steps[0]!.mse_v1) - Number(tr.steps[0]!.mse_v1))).toBeGreaterThan(
      1e-3,
    );
  });

  it('refuses bad settings naming the field and the value', () => {
    const bad: [Partial<TrainConfig>, TrainConfig['method'], RegExp][] = [
      [
        {},
        'sed' as TrainConfig['method'],
        /field 'method' is "sed": must be one of moco, disco, seed, compress-1q, compress-2q/,
      ],
      [
        { mseViews: 'second' as 'both' },
        'disco',
        /field 'mseViews' is "second": must be 'both' or 'first'/,
      ],
      [
        { onlyMse: true },
        'seed',
        /field 'onlyMse' is true: applies to method 'disco' only, not 'seed'/,
      ],
      [
        { mseViews: 'first' },
        'compress-2q',
        /field 'mseViews' is "first": applies to method 'disco' only/,
      ],
      [
        { seedQueueSize: 12 },
        'seed',
        /field 'seedQueueSize' is 12: must be a multiple of batchSize 8/,
      ],
      [
        { seedTeacherTemperature: 0 },
        'seed',
        /field 'seedTeacherTemperature' is 0: must be a number > 0/,
      ],
      [
        { compressQueueSize: 32 },
        'compress-2q',
        /field 'compressQueueSize' is 32: must be 0 or queueSize 16/,
      ],
      [
        { compressStudentTemperature: 0.1 },
        'seed',
        /field 'compressStudentTemperature' is 0.1: applies to method 'compress-1q' or 'compress-2q' only/,
      ],
      [
        { teacher: undefined },
        'seed',
        /field 'teacher' is undefined: a teacher encoder file is required for seed/,
      ],
    ];
    for (const [more, method, message] of bad) {
      expect(() => validateTrainConfig(tiny(method, more), 'test')).toThrow(message);
    }
    // compress-1q's own bank may differ from MoCo's queue.
    expect(() => validateTrainConfig(tiny('compress-1q', { compressQueueSize: 32 }))).not.toThrow();
  });

  it("compares every method field on resume; an old checkpoint's missing fields are defaults", () => {
    const seed = tiny('seed');
    expect(() => compareResumeConfig(seed, tiny('compress-2q'), 'ckpt.safetensors')).toThrow(
      `'method' was "seed", now "compress-2q"`,
    );
    expect(() =>
      compareResumeConfig(seed, { ...seed, seedTeacherTemperature: 0.01 }, 'ckpt.safetensors'),
    ).toThrow(`'seedTeacherTemperature' was 0.0001, now 0.01`);
    const disco = tiny('disco');
    expect(() =>
      compareResumeConfig(disco, { ...disco, onlyMse: true, mseViews: 'first' }, 'c'),
    ).toThrow(`'mseViews' was "both", now "first"; 'onlyMse' was false, now true`);
    // A DisCo checkpoint written before these fields existed.
    const old: Partial<TrainConfig> = { ...disco };
    for (const f of [
      'mseViews',
      'onlyMse',
      'seedQueueSize',
      'seedStudentTemperature',
      'seedTeacherTemperature',
      'compressQueueSize',
      'compressStudentTemperature',
      'compressTeacherTemperature',
    ] as const)
      delete old[f];
    expect(compareResumeConfig(old, disco, 'c')).toEqual({ oldEpochs: null });
  });

  it('resumes a CompRess-2q run exactly: both banks and their pointers come back', async () => {
    const cfg = tiny('compress-2q', { teacherBn: 'eval', epochs: 2 });
    const unbroken = await run('c2q-unbroken', cfg);
    const dir = join(work, 'c2q-resumed');
    const quiet = { runDir: dir, quiet: true, log: () => {}, ...sets };
    // One epoch, then the same run extended to two (the cosine schedule of two epochs
    // starts at the same rate, so the numbers are an unbroken run's).
    (await train({ ...cfg, epochs: 1 }, quiet)).built.encoder.params.dispose();
    const ckpt = readCheckpoint(listCheckpoints(dir).at(-1)!);
    expect(ckpt.tensors.get('compress.teacher_bank')!.shape).toEqual([16, 16]);
    expect(ckpt.tensors.get('compress.teacher_bank_ptr')!.dataSync()[0]).toBe(0);
    expect(ckpt.state.queuePtr).toBe(0);
    for (const t of ckpt.tensors.values()) t.dispose();
    (await train(cfg, { ...quiet, resume: true })).built.encoder.params.dispose();
    const strip = ({ imgPerSec, seconds, trainSeconds, ...rest }: Line) => {
      void [imgPerSec, seconds, trainSeconds];
      return rest;
    };
    expect(metrics(dir).map(strip)).toEqual(metrics(unbroken.dir).map(strip));
  });
});

/** The first `count` images or labels of a shipped split, as an uncompressed IDX file. */
function cutIdx(from: string, to: string, count: number, header: number, bytesEach: number) {
  const all = gunzipSync(readFileSync(join(fashionMnistSubsetDir(), `${from}.gz`)));
  const out = Buffer.from(all.subarray(0, header + count * bytesEach));
  out.writeUInt32BE(count, 4);
  writeFileSync(join(to, from), out);
}

/** `disco <args>` from source in a child process on the cpu backend (node, no tsx wrapper). */
function start(args: string[]): {
  child: ChildProcess;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
} {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(root, 'scripts/disco-dev.ts'), ...args],
    { cwd: root, env: { ...process.env, DISCO_BACKEND: 'cpu' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    },
  );
  return { child, done };
}

describe('a SEED run killed and resumed (cpu backend, child processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'disco-seed-resume-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('resumes bit-identical to the unbroken run, the queue of teacher embeddings restored', async () => {
    const data = join(dir, 'data');
    mkdirSync(data);
    cutIdx('train-images-idx3-ubyte', data, 64, 16, 28 * 28);
    cutIdx('train-labels-idx1-ubyte', data, 64, 8, 1);
    cutIdx('t10k-images-idx3-ubyte', data, 32, 16, 28 * 28);
    cutIdx('t10k-labels-idx1-ubyte', data, 32, 8, 1);
    const teacher = join(dir, 'teacher.safetensors');
    const t = buildEncoder(TEACHER_SPEC, new Rng(11));
    saveModelFile(teacher, t.encoder, {
      spec: TEACHER_SPEC,
      imageSize: 28,
      mean: [...FASHION_MNIST_MEAN],
      std: [...FASHION_MNIST_STD],
    });
    t.encoder.params.dispose();
    // 2 epochs of 16 / 8 = 2 steps; a checkpoint after every step.
    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        arch: 'mobilenet_v3_small',
        widthMultiplier: 0.25,
        hiddenDim: 32,
        dim: 16,
        limit: 16,
        batchSize: 8,
        bnGroupSize: 4,
        queueSize: 16,
        epochs: 2,
        seed: 5,
        checkpointEvery: 1,
      }),
    );
    const args = (out: string, ...more: string[]) => [
      'distill',
      '--method',
      'seed',
      '--teacher',
      teacher,
      '--data',
      data,
      '--config',
      config,
      '--quiet',
      '--out',
      out,
      ...more,
    ];
    const ref = join(dir, 'unbroken');
    const u = await start(args(ref)).done;
    expect(u.code, u.stderr).toBe(0);
    expect(u.stdout).toMatch(/infonce [\d.]+ \(weight 0\) {2}seed [\d.]+/);
    // The CLI picks SEED's teacher BN mode, eval, when none is given.
    expect(JSON.parse(readFileSync(join(ref, 'config.json'), 'utf8')).teacherBn).toBe('eval');

    const killed = join(dir, 'killed');
    const p = start(args(killed));
    const stepsDone = () =>
      existsSync(join(killed, 'metrics.jsonl'))
        ? readFileSync(join(killed, 'metrics.jsonl'), 'utf8').split('"kind":"step"').length - 1
        : 0;
    while (stepsDone() < 2) {
      if (p.child.exitCode !== null) throw new Error('the child exited before step 2');
      await new Promise((r) => setTimeout(r, 20));
    }
    p.child.kill('SIGKILL');
    await p.done;
    const ckpt = readCheckpoint(listCheckpoints(killed).at(-1)!);
    expect(ckpt.state.step).toBeGreaterThanOrEqual(1);
    expect(ckpt.state.step).toBeLessThan(4);
    expect(ckpt.tensors.get('seed.queue')!.shape).toEqual([16, 16]);
    expect(ckpt.tensors.get('seed.queue_ptr')!.dataSync()[0]).toBe((8 * ckpt.state.step) % 16);
    for (const x of ckpt.tensors.values()) x.dispose();

    const r = await start(args(killed, '--resume')).done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/resumed from \S+ckpt-e\d{4}-s\d{6}\.safetensors/);
    const strip = (file: string) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => {
          const { imgPerSec, seconds, trainSeconds, ...rest } = JSON.parse(l);
          void [imgPerSec, seconds, trainSeconds];
          return rest;
        });
    expect(strip(join(killed, 'metrics.jsonl'))).toEqual(strip(join(ref, 'metrics.jsonl')));
    const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
    expect(sha(join(killed, 'encoder.safetensors'))).toBe(sha(join(ref, 'encoder.safetensors')));
  }, 90_000);
});

describe('disco distill --method', () => {
  it('names the flag and the value it refuses', async () => {
    const r = await start(['distill', '--teacher', 'x', '--method', 'sed']).done;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/option '--method <name>' argument 'sed' is invalid/);
    expect(r.stderr).toContain('seed, compress-1q, compress-2q');
  });
});
