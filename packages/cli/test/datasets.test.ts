import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { channelStats, openTrainData } from '../src/datasets.js';
import { disco } from './helpers.js';

/** A CIFAR-10 folder with `n` records per batch; record r of batch b is all (b * 40 + r). */
function cifar10(n: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'disco-cifar-'));
  const files = ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5'];
  [...files, 'test_batch'].forEach((f, b) => {
    const buf = Buffer.alloc(n * 3073);
    for (let r = 0; r < n; r++) {
      buf[r * 3073] = r % 10;
      buf.fill(b * 40 + r, r * 3073 + 1, (r + 1) * 3073);
    }
    writeFileSync(join(dir, `${f}.bin`), buf);
  });
  return dir;
}

async function imageFolder(classes: string[], perClass: number): Promise<string> {
  const sharp = (await import('sharp')).default;
  const dir = mkdtempSync(join(tmpdir(), 'disco-folder-'));
  for (const [k, cls] of classes.entries()) {
    mkdirSync(join(dir, cls));
    for (let i = 0; i < perClass; i++) {
      // Class 0 dark and class 1 bright, with a per-image stripe so images differ.
      const raw = Buffer.alloc(36 * 36 * 3, k === 0 ? 40 : 200);
      raw.fill(120 + 10 * i, 0, 36 * 3 * (4 + i));
      await sharp(raw, { raw: { width: 36, height: 36, channels: 3 } })
        .png()
        .toFile(join(dir, cls, `${i}.png`));
    }
  }
  return dir;
}

describe('openTrainData', () => {
  it('recognises CIFAR-10 and normalises with its train statistics', async () => {
    const d = await openTrainData({ data: cifar10(4), imageSize: 32, limit: 8 });
    expect(d.kind).toBe('cifar10');
    expect([d.train.count, d.evalTrain.count, d.test!.count]).toEqual([8, 20, 4]);
    // Train pixels: batch b in 0..4, record r in 0..3, value (40 b + r) / 255, all channels.
    let sum = 0;
    let sq = 0;
    for (let b = 0; b < 5; b++) {
      for (let r = 0; r < 4; r++) {
        sum += (40 * b + r) / 255;
        sq += ((40 * b + r) / 255) ** 2;
      }
    }
    const mean = sum / 20;
    const std = Math.sqrt(sq / 20 - mean ** 2);
    for (let c = 0; c < 3; c++) {
      expect(d.mean[c]).toBeCloseTo(mean, 6);
      expect(d.std[c]).toBeCloseTo(std, 6);
    }
  });

  it('holds out a seeded 20% of each class of a labelled image folder', async () => {
    const dir = await imageFolder(['bright', 'dark'], 5);
    const d = await openTrainData({ data: dir, imageSize: 32, seed: 3 });
    expect(d.kind).toBe('image-folder');
    expect([d.train.count, d.test!.count]).toEqual([8, 2]);
    expect([...d.test!.labels].sort()).toEqual([0, 1]);
    expect(d.describe).toMatch(/2 classes, 20% of each held out for testing/);
    const again = await openTrainData({ data: dir, imageSize: 32, seed: 3 });
    expect([...again.test!.images]).toEqual([...d.test!.images]);
    const stats = channelStats(d.train);
    expect(d.mean).toEqual(stats.mean);
  });

  it('uses train/ and val/ splits when present, and names a folder it cannot read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-splits-'));
    const a = await imageFolder(['a', 'b'], 3);
    const { cpSync } = await import('node:fs');
    cpSync(a, join(dir, 'train'), { recursive: true });
    cpSync(a, join(dir, 'val'), { recursive: true });
    const d = await openTrainData({ data: dir, imageSize: 32, channels: 1 });
    expect([d.train.count, d.test!.count, d.train.channels]).toEqual([6, 6, 1]);
    await expect(openTrainData({ data: join(dir, 'nope'), imageSize: 32 })).rejects.toThrow(
      /--data: missing folder .*nope/,
    );
  });
});

describe('training on other data', () => {
  const tiny = [
    '--arch',
    'mobilenet_v3_small',
    '--width-multiplier',
    '0.25',
    '--image-size',
    '32',
    '--batch-size',
    '8',
    '--queue-size',
    '16',
    '--bn-group-size',
    '4',
    '--epochs',
    '1',
    '--quiet',
  ];
  it('pretrains on a labelled image folder and evaluates on its held-out images', async () => {
    const dir = await imageFolder(['bright', 'dark'], 10);
    const out = mkdtempSync(join(tmpdir(), 'disco-run-'));
    const r = disco(['pretrain', ...tiny, '--data', dir, '--out', out]);
    expect(r.status, r.all).toBe(0);
    expect(r.stdout).toMatch(/data: image folder .* \(2 classes, 20% of each held out/);
    // Two classes, dark vs bright: even a 1-epoch encoder separates them.
    const knn = Number(r.stdout.match(/final: kNN top-1 ([\d.]+)%/)![1]);
    expect(knn).toBeGreaterThanOrEqual(75);
  });

  it('pretrains on unlabelled images without evaluating', async () => {
    const dir = await imageFolder(['only'], 16);
    const out = mkdtempSync(join(tmpdir(), 'disco-run-'));
    const r = disco(['pretrain', ...tiny, '--data', join(dir, 'only'), '--out', out]);
    expect(r.status, r.all).toBe(0);
    expect(r.stdout).toMatch(/unlabelled: no evaluation/);
    expect(r.stdout).toMatch(/final: unlabelled data, no evaluation/);
  });
});

describe('config files', () => {
  it('refuse what is not a settings object, naming the file, the field and the value', () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-cfg-'));
    const cases: [string, string, RegExp][] = [
      ['bad.json', '{"lr": 0.1,', /bad\.json: not valid JSON/],
      ['list.json', '[1, 2]', /list\.json: must be a JSON object of settings, got \[1,2\]/],
      [
        'typo.json',
        '{"learningRate": 0.1}',
        /typo\.json: unknown field 'learningRate'; the fields are .*lr/,
      ],
      ['type.json', '{"epochs": "ten"}', /type\.json: field 'epochs' is "ten": must be a number/],
      ['range.json', '{"epochs": -1}', /field 'epochs' is -1: must be a positive integer/],
    ];
    for (const [name, text, error] of cases) {
      writeFileSync(join(dir, name), text);
      const r = disco(['pretrain', '--config', join(dir, name), '--out', join(dir, 'run')]);
      expect(r.status, name).toBe(1);
      expect(r.stderr, name).toMatch(error);
    }
  });
});
