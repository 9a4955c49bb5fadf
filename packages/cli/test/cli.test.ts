import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from 'node:fs';
import { copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync, gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { fashionMnistSubsetDir } from '@disco/data';
import { disco } from './helpers.js';

const tiny = [
  '--arch',
  'mobilenet_v3_small',
  '--width-multiplier',
  '0.5',
  '--limit',
  '128',
  '--batch-size',
  '64',
  '--queue-size',
  '128',
  '--quiet',
];

describe('disco command line', () => {
  it('documents every command with --help', () => {
    const top = disco(['--help']);
    expect(top.status).toBe(0);
    for (const cmd of ['pretrain', 'distill', 'eval', 'pipeline'])
      expect(top.stdout).toContain(cmd);
    for (const cmd of [
      'pretrain',
      'distill',
      'eval',
      'pipeline',
      'inspect',
      'import',
      'export',
      'embed',
      'bench',
      'report',
      'experiment',
    ]) {
      const r = disco([cmd, '--help']);
      expect(r.status, r.all).toBe(0);
      expect(r.stdout).toContain('Usage: disco');
    }
    expect(disco(['distill', '--help']).stdout).toContain('--teacher <file>');
  });

  it('refuses bad input with an error naming the field and value, before training', () => {
    const arch = disco(['pretrain', '--arch', 'resnet9000', '--epochs', '1']);
    expect(arch.status).toBe(1);
    expect(arch.stderr).toMatch(
      /field 'arch' is "resnet9000": unknown backbone; known: .*resnet18/,
    );

    const queue = disco(['pretrain', ...tiny, '--queue-size', '100']);
    expect(queue.status).toBe(1);
    expect(queue.stderr).toMatch(/field 'queueSize' is 100: must be a multiple of batchSize 64/);

    const missing = disco(['pretrain', ...tiny, '--data', '/nonexistent/fmnist']);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/missing folder \/nonexistent\/fmnist/);

    // A truncated IDX file names the file and the byte counts.
    const dir = mkdtempSync(join(tmpdir(), 'disco-trunc-'));
    for (const f of readdirSync(fashionMnistSubsetDir())) {
      if (f.endsWith('.gz')) copyFileSync(join(fashionMnistSubsetDir(), f), join(dir, f));
    }
    const images = gunzipSync(readFileSync(join(dir, 'train-images-idx3-ubyte.gz')));
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(images.subarray(0, 10_000)));
    const trunc = disco(['pretrain', ...tiny, '--data', dir]);
    expect(trunc.status).toBe(1);
    expect(trunc.stderr).toMatch(/train-images-idx3-ubyte\.gz/);
    expect(trunc.stderr).toMatch(/expected \d+ bytes/);

    const nan = disco(['pretrain', ...tiny, '--lr', 'fast']);
    expect(nan.status).toBe(1);
    expect(nan.stderr).toMatch(/--lr: 'fast' is not a number/);
  });

  it('pretrains, resumes, distills and evaluates end to end on a tiny config', () => {
    const out = mkdtempSync(join(tmpdir(), 'disco-e2e-'));
    const teacherDir = join(out, 'teacher');
    const pre = disco(['pretrain', ...tiny, '--epochs', '2', '--out', teacherDir]);
    expect(pre.status, pre.all).toBe(0);
    expect(pre.stdout).toMatch(/epoch 2\/2 {2}loss \d/);
    const final = pre.stdout.match(/final: kNN top-1 ([\d.]+)%/);
    // Chance is 10%: even a briefly trained encoder's kNN is far above it.
    expect(Number(final![1])).toBeGreaterThan(30);
    for (const f of ['config.json', 'metrics.jsonl', 'encoder.safetensors']) {
      expect(existsSync(join(teacherDir, f))).toBe(true);
    }
    const lines = readFileSync(join(teacherDir, 'metrics.jsonl'), 'utf8').trim().split('\n');
    const steps = lines.map((l) => JSON.parse(l)).filter((m) => m.kind === 'step');
    expect(steps).toHaveLength(4); // 128 images / 64 per step x 2 epochs
    expect(readdirSync(join(teacherDir, 'checkpoints'))).toEqual([
      'ckpt-e0001-s000002.safetensors',
      'ckpt-e0002-s000004.safetensors',
    ]);

    // Resume continues from the newest checkpoint instead of starting again.
    const resumed = disco(['pretrain', ...tiny, '--epochs', '3', '--resume', '--out', teacherDir]);
    expect(resumed.status, resumed.all).toBe(0);
    expect(resumed.stdout).toMatch(
      /resumed from .*ckpt-e0002-s000004\.safetensors \(epoch 2, step 4\)/,
    );
    expect(resumed.stdout).not.toMatch(/epoch 1\/3/);
    expect(resumed.stdout).toMatch(/epoch 3\/3/);

    const studentDir = join(out, 'student');
    mkdirSync(studentDir);
    const teacher = join(teacherDir, 'encoder.safetensors');
    const dis = disco([
      'distill',
      ...tiny,
      '--epochs',
      '1',
      '--teacher',
      teacher,
      '--out',
      studentDir,
    ]);
    expect(dis.status, dis.all).toBe(0);
    expect(dis.stdout).toMatch(/infonce [\d.]+ {2}mse_v1 [\d.]+ {2}mse_v2 [\d.]+/);

    const ev = disco(['eval', join(studentDir, 'encoder.safetensors')]);
    expect(ev.status, ev.all).toBe(0);
    expect(ev.stdout).toMatch(
      /kNN top-1 [\d.]+%, linear top-1 [\d.]+% \(5000 train \/ 2000 test\)/,
    );

    const badTeacher = disco([
      'distill',
      ...tiny,
      '--epochs',
      '1',
      '--teacher',
      join(out, 'none.st'),
    ]);
    expect(badTeacher.status).toBe(1);
    expect(badTeacher.stderr).toMatch(/none\.st: file not found/);
  });
});
