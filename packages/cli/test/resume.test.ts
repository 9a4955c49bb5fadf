/**
 * Training runs that survive: mid-epoch checkpoints, SIGKILL, SIGINT and SIGTERM, damaged
 * checkpoint files, changed configs and a NaN loss. Each run is the real CLI in a child
 * process on the cpu backend (a tiny MobileNetV3 on 24 of 256 Fashion-MNIST images, 3 epochs
 * of 3 steps, a checkpoint every 2 steps), compared with one unbroken reference run of the
 * same seed: a resumed run must give the same numbers to the last bit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng, writeSafetensors } from '@disco/core';
import { fashionMnistSubsetDir } from '@disco/data';
import { listCheckpoints, readCheckpoint } from '../src/checkpoint.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'disco-resume-'));

/** 3 epochs of 24 / 8 = 3 steps; checkpoints at steps 2, 3 (epoch end), 4, 6 (end), 8, 9. */
const CONFIG = {
  arch: 'mobilenet_v3_small',
  widthMultiplier: 0.25,
  hiddenDim: 32,
  dim: 16,
  limit: 24,
  batchSize: 8,
  bnGroupSize: 4,
  queueSize: 32,
  lr: 0.06,
  epochs: 3,
  seed: 7,
  checkpointEvery: 2,
  keepCheckpoints: 3,
};
const STEPS = 9;

/** The first `count` images and labels of a shipped split, as an uncompressed IDX file. */
function cutIdx(from: string, to: string, count: number, header: number, bytesEach: number) {
  const all = gunzipSync(readFileSync(join(fashionMnistSubsetDir(), `${from}.gz`)));
  const out = Buffer.from(all.subarray(0, header + count * bytesEach));
  out.writeUInt32BE(count, 4);
  writeFileSync(join(to, from), out);
}

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts `disco <args>` from source in a child process (node itself, no tsx wrapper). */
function start(args: string[]): { child: ChildProcess; done: Promise<Result> } {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(root, 'scripts/disco-dev.ts'), ...args],
    { cwd: root, env: { ...process.env, DISCO_BACKEND: 'cpu' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<Result>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

const run = (args: string[]) => start(args).done;

let dataDir = '';
let configFile = '';
const trainArgs = (out: string, ...more: string[]) => [
  'pretrain',
  '--data',
  dataDir,
  '--config',
  configFile,
  '--quiet',
  '--out',
  out,
  ...more,
];

type Metric = Record<string, number | string | undefined>;

/** The lines of a run's metrics.jsonl that parse (a line torn by SIGKILL does not). */
function readMetrics(dir: string): Metric[] {
  const file = join(dir, 'metrics.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as Metric];
      } catch {
        return [];
      }
    });
}

const lastStep = (dir: string) =>
  Math.max(0, ...readMetrics(dir).map((m) => (m.kind === 'step' ? Number(m.step) : 0)));

/** Waits until the child has logged step `n` (or later); fails if it exits first. */
async function waitForStep(dir: string, n: number, child: ChildProcess): Promise<void> {
  while (lastStep(dir) < n) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the child exited (${child.exitCode ?? child.signalCode}) before step ${n}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Metrics without wall-clock figures, which differ between any two runs. */
const withoutTimes = ({ imgPerSec, seconds, trainSeconds, ...rest }: Metric) => {
  void [imgPerSec, seconds, trainSeconds];
  return rest;
};

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** The epoch and final lines a person reads, without images/s and seconds. */
const readableLines = (stdout: string) =>
  stdout
    .split('\n')
    .filter((l) => /^(epoch \d|final:)/.test(l))
    .map((l) => l.replace(/ {2}[\d.]+ img\/s|train \d+ s/g, ''));

interface Finished {
  dir: string;
  stdout: string;
  metrics: Metric[];
}
let reference: Finished;

/** Expects the run in `dir` to have computed exactly what the unbroken run `ref` did. */
function expectSameAsReference(dir: string, stdout: string, ref: Finished = reference) {
  const metrics = readMetrics(dir);
  expect(metrics.map(withoutTimes)).toEqual(ref.metrics.map(withoutTimes));
  const steps = ref.metrics.filter((m) => m.kind === 'step').length;
  expect(metrics.filter((m) => m.kind === 'step').map((m) => m.step)).toEqual(
    Array.from({ length: steps }, (_, i) => i + 1),
  );
  // The resumed process logs only the epochs it ran; those match the unbroken run's.
  const lines = readableLines(stdout);
  expect(lines.length).toBeGreaterThan(0);
  expect(readableLines(ref.stdout).slice(-lines.length)).toEqual(lines);
  expect(sha256(join(dir, 'encoder.safetensors'))).toBe(
    sha256(join(ref.dir, 'encoder.safetensors')),
  );
}

/** A copy of the finished reference run, to damage or resume differently. */
function copyOfReference(name: string): string {
  const dir = join(work, name);
  cpSync(reference.dir, dir, { recursive: true });
  return dir;
}

describe('training runs that survive (cpu backend, child processes)', () => {
  beforeAll(async () => {
    dataDir = join(work, 'data');
    mkdirSync(dataDir);
    cutIdx('train-images-idx3-ubyte', dataDir, 256, 16, 28 * 28);
    cutIdx('train-labels-idx1-ubyte', dataDir, 256, 8, 1);
    cutIdx('t10k-images-idx3-ubyte', dataDir, 200, 16, 28 * 28);
    cutIdx('t10k-labels-idx1-ubyte', dataDir, 200, 8, 1);
    configFile = join(work, 'config.json');
    writeFileSync(configFile, JSON.stringify(CONFIG));

    const dir = join(work, 'reference');
    const r = await run(trainArgs(dir));
    expect(r.code, r.stderr).toBe(0);
    reference = { dir, stdout: r.stdout, metrics: readMetrics(dir) };
    expect(reference.metrics.filter((m) => m.kind === 'step')).toHaveLength(STEPS);
    expect(listCheckpoints(dir).map((p) => basename(p))).toEqual([
      'ckpt-e0002-s000006.safetensors',
      'ckpt-e0003-s000008.safetensors',
      'ckpt-e0003-s000009.safetensors',
    ]);
  }, 90_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('resumes a run killed with SIGKILL bit-identical to the unbroken one', async () => {
    // A seeded step after the first checkpoint (step 2): 3..8.
    const killAt = 3 + new Rng(20_250_101).int(STEPS - 3);
    const dir = join(work, 'killed');
    const first = start(trainArgs(dir));
    await waitForStep(dir, killAt, first.child);
    first.child.kill('SIGKILL');
    const killed = await first.done;
    expect(killed.signal).toBe('SIGKILL');
    const stepsDone = lastStep(dir);
    expect(stepsDone).toBeGreaterThanOrEqual(killAt);
    expect(stepsDone).toBeLessThan(STEPS);

    const r = await run(trainArgs(dir, '--resume'));
    expect(r.code, r.stderr).toBe(0);
    const m = r.stdout.match(/resumed from \S+ckpt-e\d{4}-s(\d{6})\.safetensors \(.*step (\d+)\)/);
    expect(m, r.stdout).not.toBeNull();
    const resumedAt = Number(m![2]);
    expect(Number(m![1])).toBe(resumedAt);
    // The newest checkpoint before the kill (the one of the last step logged may have been
    // under way): they are written every 2 steps and at each epoch end.
    const written = [2, 3, 4, 6, 8];
    expect(written).toContain(resumedAt);
    expect(resumedAt).toBeLessThanOrEqual(stepsDone);
    expect(written.filter((s) => s > resumedAt && s < stepsDone)).toEqual([]);
    expectSameAsReference(dir, r.stdout);
  }, 60_000);

  it('detects flipped bytes anywhere in a checkpoint by its sha256', () => {
    const newest = listCheckpoints(reference.dir).at(-1)!;
    const good = readFileSync(newest);
    const digit = good.indexOf('\\"step\\":9') + '\\"step\\":'.length;
    const dataStart = 8 + Number(good.readBigUInt64LE(0));
    expect(String.fromCharCode(good[digit]!)).toBe('9');
    // The state's step 9 made 8 (still valid JSON), the first and the last tensor byte.
    for (const [at, mask] of [
      [digit, 0x01],
      [dataStart, 0x40],
      [good.length - 1, 0x40],
    ] as const) {
      const bad = Buffer.from(good);
      bad[at] ^= mask;
      const file = join(work, `flipped-${at}.safetensors`);
      writeFileSync(file, bad);
      expect(() => readCheckpoint(file), `byte ${at}`).toThrow(
        new RegExp(`checkpoint ${file} is damaged: sha256 of its bytes is [0-9a-f]{64}`),
      );
    }
    expect(readCheckpoint(newest).state.step).toBe(9);
  });

  for (const damage of ['truncated', 'flipped'] as const) {
    it(`resumes from the checkpoint before a ${damage} newest one and says so`, async () => {
      const dir = copyOfReference(damage);
      const [, previous, newest] = listCheckpoints(dir);
      const size = readFileSync(newest!).length;
      if (damage === 'truncated') {
        truncateSync(newest!, Math.floor(size / 2));
      } else {
        const bytes = readFileSync(newest!);
        bytes[Math.floor(size * 0.6)] ^= 0x10;
        writeFileSync(newest!, bytes);
      }
      const reason = damage === 'truncated' ? 'tensor .* do not fit' : 'sha256 of its bytes is';
      const r = await run(trainArgs(dir, '--resume'));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(
        new RegExp(`checkpoint ${newest} is damaged: ${reason}.*; resuming from ${previous}`),
      );
      expect(r.stdout).toMatch(/\(epoch 3 batch 2, step 8\); 3 later line\(s\) of metrics/);
      // The damaged file is set aside; step 9's checkpoint is written again, whole.
      expect(existsSync(`${newest}.damaged`)).toBe(true);
      expect(readCheckpoint(newest!).state.step).toBe(9);
      expectSameAsReference(dir, r.stdout);
    }, 60_000);
  }

  it('reads checkpoints of the first format (ckpt-epoch-NNNN, no checksum)', async () => {
    const dir = join(work, 'first-format');
    mkdirSync(join(dir, 'checkpoints'), { recursive: true });
    cpSync(join(reference.dir, 'metrics.jsonl'), join(dir, 'metrics.jsonl'));
    // The end of epoch 2, as the first format wrote it: no batch, no sums, no sha256.
    const ckpt = readCheckpoint(listCheckpoints(reference.dir)[0]!);
    const { batch, lastEpochLoss, ...state } = ckpt.state;
    expect([batch, state.epoch, state.step]).toEqual([0, 2, 6]);
    void lastEpochLoss;
    const tensors = new Map(
      [...ckpt.tensors].map(([name, t]) => [
        name,
        { shape: t.shape, values: t.dataSync() as Float32Array },
      ]),
    );
    writeSafetensors(join(dir, 'checkpoints', 'ckpt-epoch-0002.safetensors'), tensors, {
      format: 'disco-checkpoint/1',
      state: JSON.stringify(state),
    });
    for (const t of ckpt.tensors.values()) t.dispose();
    // Sorted by (epoch, step), a first-format file closing its epoch.
    mkdirSync(join(work, 'names', 'checkpoints'), { recursive: true });
    for (const f of [
      'ckpt-e0010-s000028.safetensors',
      'ckpt-epoch-0002.safetensors',
      'ckpt-e0002-s000005.safetensors',
      'ckpt-e0003-s1000000.safetensors',
      'ckpt-e0003-s000999.safetensors',
      'ckpt-e0003-s000008.safetensors.tmp-123',
      'notes.txt',
    ])
      writeFileSync(join(work, 'names', 'checkpoints', f), '');
    expect(listCheckpoints(join(work, 'names')).map((p) => basename(p))).toEqual([
      'ckpt-e0002-s000005.safetensors',
      'ckpt-epoch-0002.safetensors',
      'ckpt-e0003-s000999.safetensors',
      'ckpt-e0003-s1000000.safetensors',
      'ckpt-e0010-s000028.safetensors',
    ]);

    const r = await run(trainArgs(dir, '--resume'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/resumed from \S+ckpt-epoch-0002\.safetensors \(epoch 2, step 6\)/);
    expectSameAsReference(dir, r.stdout);
  }, 60_000);

  it('on SIGINT or SIGTERM finishes the step, checkpoints, exits 130 or 143, and resumes', async () => {
    const dir = join(work, 'signals');
    let resumeArgs = trainArgs(dir);
    for (const [signal, status, at] of [
      ['SIGINT', 130, 3],
      ['SIGTERM', 143, 6],
    ] as const) {
      const p = start(resumeArgs);
      await waitForStep(dir, at, p.child);
      p.child.kill(signal);
      const r = await p.done;
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(status);
      expect(r.stdout).toContain(
        `${signal}: finishing the current step, then writing a checkpoint`,
      );
      const m = r.stdout.match(
        new RegExp(
          `${signal}: stopped (?:at epoch \\d batch \\d, step (\\d+)|at the end of epoch \\d); ` +
            'checkpoint written to (\\S+\\.safetensors)\\. To continue, run the same command ' +
            'with --resume',
        ),
      );
      expect(m, r.stdout).not.toBeNull();
      // The checkpoint holds the last step the child logged: the step under way finished.
      const saved = readCheckpoint(m![2]!);
      expect(saved.state.step).toBe(lastStep(dir));
      expect(saved.state.step).toBeGreaterThanOrEqual(at);
      for (const t of saved.tensors.values()) t.dispose();
      resumeArgs = trainArgs(dir, '--resume');
    }
    const r = await run(resumeArgs);
    expect(r.code, r.stderr).toBe(0);
    expectSameAsReference(dir, r.stdout);
  }, 90_000);

  it('refuses a changed config on resume, naming each field and both values', async () => {
    const dir = copyOfReference('changed');
    const r = await run(trainArgs(dir, '--resume', '--lr', '0.1', '--batch-size', '4'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /resume \S+ckpt-e0003-s000009\.safetensors: the config differs from the checkpoint's: /,
    );
    expect(r.stderr).toContain("'batchSize' was 8, now 4; 'lr' was 0.06, now 0.1.");
    // Nothing in the folder changed.
    expect(readFileSync(join(dir, 'config.json'), 'utf8')).toBe(
      readFileSync(join(reference.dir, 'config.json'), 'utf8'),
    );
    expect(readMetrics(dir)).toEqual(reference.metrics);
  }, 60_000);

  it('extends a finished run to more epochs, re-computing the cosine schedule', async () => {
    const dir = copyOfReference('extended');
    // checkpointEvery is cosmetic: it may change on resume too.
    const r = await run(trainArgs(dir, '--resume', '--epochs', '4', '--checkpoint-every', '1'));
    expect(r.code, r.stderr).toBe(0);
    const lr4 = 0.06 * 0.5 * (1 + Math.cos((Math.PI * 3) / 4)); // 0.008787
    expect(r.stdout).toContain(
      'epochs 3 -> 4: the cosine learning-rate schedule is re-computed for 4 epochs ' +
        `(epoch 4 runs at lr ${lr4.toFixed(4)})`,
    );
    expect(r.stdout).toMatch(/epoch 4\/4 {2}loss \d/);
    expect(r.stdout).not.toMatch(/epoch [123]\/4/);

    const metrics = readMetrics(dir);
    const before = reference.metrics.filter((m) => m.kind !== 'final');
    expect(metrics.slice(0, before.length)).toEqual(before);
    const added = metrics.slice(before.length);
    expect(added.map((m) => [m.kind, m.epoch, m.step])).toEqual([
      ['step', 4, 10],
      ['step', 4, 11],
      ['step', 4, 12],
      ['epoch', 4, 12],
      ['final', undefined, undefined],
    ]);
    expect(added[0]!.lr).toBe(lr4);
    expect(listCheckpoints(dir).map((p) => basename(p))).toEqual([
      'ckpt-e0004-s000010.safetensors',
      'ckpt-e0004-s000011.safetensors',
      'ckpt-e0004-s000012.safetensors',
    ]);
  }, 60_000);

  it('resumes a DisCo run bit-identical, with the teacher known by its sha256', async () => {
    // The reference encoder as the teacher; a copy of it elsewhere is the same teacher.
    const teacher = join(reference.dir, 'encoder.safetensors');
    const moved = join(work, 'teacher-copy.safetensors');
    cpSync(teacher, moved);
    // 2 epochs (6 steps), to keep the file short.
    const distill = (out: string, file: string, ...more: string[]) => [
      'distill',
      ...trainArgs(out, '--teacher', file, '--epochs', '2', ...more).slice(1),
    ];
    const unbrokenDir = join(work, 'distill-unbroken');
    const u = await run(distill(unbrokenDir, teacher));
    expect(u.code, u.stderr).toBe(0);
    expect(u.stdout).toMatch(/infonce [\d.]+ {2}mse_v1 [\d.]+ {2}mse_v2 [\d.]+/);
    const unbroken = { dir: unbrokenDir, stdout: u.stdout, metrics: readMetrics(unbrokenDir) };

    const dir = join(work, 'distill-stopped');
    const p = start(distill(dir, teacher));
    await waitForStep(dir, 2, p.child);
    p.child.kill('SIGTERM');
    expect((await p.done).code).toBe(143);
    const r = await run(distill(dir, moved, '--resume'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/resumed from /);
    expectSameAsReference(dir, r.stdout, unbroken);
    expect(readFileSync(join(dir, 'config.json'), 'utf8')).toContain(moved);

    // A different teacher (one weight's lowest bit changed) is refused by its sha256.
    const changed = readFileSync(teacher);
    changed[changed.length - 4] ^= 0x01;
    const otherFile = join(work, 'teacher-other.safetensors');
    writeFileSync(otherFile, changed);
    const other = await run(distill(dir, otherFile, '--resume'));
    expect(other.code).toBe(1);
    expect(other.stderr).toContain(
      `the run used teacher sha256 ${sha256(teacher)}, ${otherFile} has ${sha256(otherFile)}`,
    );
  }, 90_000);

  it('stops on a NaN loss naming the step and loss parts, keeping the last good checkpoint', async () => {
    const dir = join(work, 'nan');
    // lr 1e30: step 1 is finite, its update blows the weights up, step 2's loss is NaN.
    const r = await run(trainArgs(dir, '--lr', '1e30', '--checkpoint-every', '1'));
    expect(r.code).toBe(1);
    const good = join(dir, 'checkpoints', 'ckpt-e0001-s000001.safetensors');
    expect(r.stderr).toContain(
      'disco: training stopped at epoch 1 batch 2/3, step 2: loss is not finite (NaN); ' +
        `parts: infonce=NaN; the step was not applied. The last good checkpoint, ${good}, is kept.`,
    );
    expect(listCheckpoints(dir)).toEqual([good]);
    const ckpt = readCheckpoint(good);
    expect(ckpt.state.step).toBe(1);
    for (const t of ckpt.tensors.values()) t.dispose();
    expect(readMetrics(dir).map((m) => m.step)).toEqual([1]);
  }, 60_000);
});
