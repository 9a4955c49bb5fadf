/**
 * The CIFAR-10 / CIFAR-100 binary readers on tiny hand-made batch files: exact pixels in NHWC,
 * labels, class names, and every malformed input an error naming the file and the values.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CIFAR10_CLASSES, loadCifar10, loadCifar100 } from '@disco/data';

const root = mkdtempSync(join(tmpdir(), 'disco-cifar-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let folders = 0;
/** A fresh folder holding the given files. */
function folder(files: Record<string, Uint8Array | string>): string {
  const dir = join(root, `d${folders++}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), bytes);
  }
  return dir;
}

/** The value the test files store for channel `ch` of pixel (row, col) of image `id`. */
const pixel = (id: number, ch: number, row: number, col: number): number =>
  (id * 41 + ch * 85 + row * 7 + col * 3) & 255;

/** One record as the format stores it: label bytes, then the R, G and B planes row-major. */
function record(id: number, labels: number[]): number[] {
  const out = [...labels];
  for (let ch = 0; ch < 3; ch++) {
    for (let row = 0; row < 32; row++) {
      for (let col = 0; col < 32; col++) out.push(pixel(id, ch, row, col));
    }
  }
  return out;
}

/** A batch file of records; `labels[i]` are the label bytes of record i, whose id is base+i. */
function batch(labels: number[][], base = 0): Uint8Array {
  return Uint8Array.from(labels.flatMap((l, i) => record(base + i, l)));
}

/** Checks every pixel of image `n` of `images` (NHWC) against image id `id` of the files. */
function expectImage(images: Uint8Array, n: number, id: number): void {
  const wrong: string[] = [];
  for (let row = 0; row < 32; row++) {
    for (let col = 0; col < 32; col++) {
      for (let ch = 0; ch < 3; ch++) {
        const got = images[((n * 32 + row) * 32 + col) * 3 + ch];
        if (got !== pixel(id, ch, row, col)) wrong.push(`(${row}, ${col}, ${ch}): ${got}`);
      }
    }
  }
  expect(wrong.slice(0, 5)).toEqual([]);
}

describe('loadCifar10', () => {
  const trainFiles = {
    'data_batch_1.bin': batch([[3], [0]], 0),
    'data_batch_2.bin': batch([[9]], 2),
    'data_batch_3.bin': batch([[1]], 3),
    'data_batch_4.bin': batch([[2]], 4),
    'data_batch_5.bin': batch([[5], [7]], 5),
  };

  it('turns the R, G, B planes of each record into NHWC pixels', () => {
    const bytes = batch([[6], [1], [9]]);
    const set = loadCifar10({ dir: folder({ 'test_batch.bin': bytes }), split: 'test' });
    expect([set.count, set.height, set.width, set.channels]).toEqual([3, 32, 32, 3]);
    expect([...set.labels]).toEqual([6, 1, 9]);
    expect(set.classNames).toBe(CIFAR10_CLASSES);
    expect(set.images.length).toBe(3 * 3072);
    // By hand: record 1 starts at byte 3073; its label is byte 3073, its red plane starts at
    // 3074, green at 3074 + 1024, blue at 3074 + 2048. Pixel (row 2, col 5) is plane index 69.
    const at = 3 * (32 * 32 + 2 * 32 + 5); // NHWC offset of image 1, pixel (2, 5)
    expect(set.images[at]).toBe(bytes[3074 + 69]);
    expect(set.images[at + 1]).toBe(bytes[3074 + 1024 + 69]);
    expect(set.images[at + 2]).toBe(bytes[3074 + 2048 + 69]);
    // pixel(1, ch, 2, 5) = 41 + 2 * 7 + 5 * 3 = 70 for red, then + 85 per channel.
    expect([set.images[at], set.images[at + 1], set.images[at + 2]]).toEqual([70, 155, 240]);
    for (let n = 0; n < 3; n++) expectImage(set.images, n, n);
  });

  it('reads the five train batches in order, and only the first records with limit', () => {
    const dir = folder(trainFiles);
    const set = loadCifar10({ dir, split: 'train' });
    expect(set.count).toBe(7);
    expect([...set.labels]).toEqual([3, 0, 9, 1, 2, 5, 7]);
    for (let n = 0; n < 7; n++) expectImage(set.images, n, n);

    const head = loadCifar10({ dir, split: 'train', limit: 3 });
    expect(head.count).toBe(3);
    expect([...head.labels]).toEqual([3, 0, 9]);
    expect(head.images).toEqual(set.images.subarray(0, 3 * 3072));
    expect(loadCifar10({ dir, split: 'train', limit: 100 }).count).toBe(7);
  });

  it('accepts the parent of cifar-10-batches-bin and reads batches.meta.txt', () => {
    const names = 'a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n';
    const dir = folder({
      'cifar-10-batches-bin/test_batch.bin': batch([[4]]),
      'cifar-10-batches-bin/batches.meta.txt': names,
    });
    const set = loadCifar10({ dir, split: 'test' });
    expect([...set.labels]).toEqual([4]);
    expect(set.classNames).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']);
  });

  it('names a missing folder or file', () => {
    const gone = join(root, 'nowhere');
    expect(() => loadCifar10({ dir: gone, split: 'test' })).toThrow(
      `loadCifar10: missing folder ${gone}`,
    );
    const four = Object.entries(trainFiles).filter(([name]) => name !== 'data_batch_3.bin');
    const dir = folder(Object.fromEntries(four));
    expect(() => loadCifar10({ dir, split: 'train' })).toThrow(
      `loadCifar10: missing file ${join(dir, 'data_batch_3.bin')}`,
    );
  });

  it('refuses a size that is not a whole number of records, and an empty file', () => {
    const cut = batch([[1], [2]]).subarray(0, 2 * 3073 - 5);
    const dir = folder({ 'test_batch.bin': cut });
    expect(() => loadCifar10({ dir, split: 'test' })).toThrow(
      `loadCifar10: ${join(dir, 'test_batch.bin')} is 6141 bytes, not a multiple of the ` +
        `record size 3073 (1 label byte + 3072 pixel bytes)`,
    );
    const empty = folder({ 'test_batch.bin': new Uint8Array(0) });
    expect(() => loadCifar10({ dir: empty, split: 'test' })).toThrow(
      `loadCifar10: ${join(empty, 'test_batch.bin')} is empty (0 bytes)`,
    );
  });

  it('refuses a label out of range, naming the file, the record and the value', () => {
    const dir = folder({ 'test_batch.bin': batch([[2], [10], [1]]) });
    expect(() => loadCifar10({ dir, split: 'test' })).toThrow(
      `loadCifar10: ${join(dir, 'test_batch.bin')} record 1 has label 10, expected 0..9`,
    );
    // The labels of records past `limit` are not read.
    expect([...loadCifar10({ dir, split: 'test', limit: 1 }).labels]).toEqual([2]);
  });

  it('refuses an unreadable file, a text file and a wrong batches.meta.txt', () => {
    const dir = folder({});
    mkdirSync(join(dir, 'test_batch.bin'));
    expect(() => loadCifar10({ dir, split: 'test' })).toThrow(
      `loadCifar10: cannot read ${join(dir, 'test_batch.bin')}`,
    );
    // 3073 bytes of text: the size fits one record, the label byte ('#' = 35) does not.
    const text = folder({ 'test_batch.bin': '#'.repeat(3073) });
    expect(() => loadCifar10({ dir: text, split: 'test' })).toThrow(/record 0 has label 35/);
    const meta = folder({ 'test_batch.bin': batch([[0]]), 'batches.meta.txt': 'cat\ndog\n' });
    expect(() => loadCifar10({ dir: meta, split: 'test' })).toThrow(
      `loadCifar10: ${join(meta, 'batches.meta.txt')} lists 2 class names, expected 10`,
    );
    // A large file in place of the names is refused before it is read.
    const big = folder({
      'test_batch.bin': batch([[0]]),
      'batches.meta.txt': 'x\n'.repeat(2 ** 19 + 1),
    });
    expect(() => loadCifar10({ dir: big, split: 'test' })).toThrow(
      `loadCifar10: ${join(big, 'batches.meta.txt')} is 1048578 bytes, too large for a list of ` +
        `class names`,
    );
  });

  it('refuses bad options', () => {
    const dir = folder({ 'test_batch.bin': batch([[0]]) });
    expect(() => loadCifar10({ dir, split: 'test', limit: 0 })).toThrow(
      'loadCifar10: limit must be a positive integer, got 0',
    );
    expect(() => loadCifar10({ dir, split: 'val' as 'test' })).toThrow(
      "loadCifar10: split must be 'train' or 'test', got val",
    );
  });
});

describe('loadCifar100', () => {
  const fine = Array.from({ length: 100 }, (_, i) => `fine${i}`).join('\n');
  const coarse = Array.from({ length: 20 }, (_, i) => `coarse${i}`).join('\n');

  it('returns the fine or the coarse labels with their names', () => {
    const bytes = batch([
      [19, 99],
      [0, 42],
      [7, 0],
    ]);
    const dir = folder({
      'test.bin': bytes,
      'fine_label_names.txt': fine,
      'coarse_label_names.txt': coarse,
    });
    const set = loadCifar100({ dir, split: 'test' });
    expect([set.count, set.height, set.width, set.channels]).toEqual([3, 32, 32, 3]);
    expect([...set.labels]).toEqual([99, 42, 0]);
    expect(set.classNames[42]).toBe('fine42');
    expect(set.classNames.length).toBe(100);
    // Record 2 starts at byte 2 * 3074; its red plane at 2 * 3074 + 2, pixel (0, 0) first.
    expect(set.images[2 * 3072]).toBe(bytes[2 * 3074 + 2]);
    for (let n = 0; n < 3; n++) expectImage(set.images, n, n);

    const sup = loadCifar100({ dir, split: 'test', labels: 'coarse', limit: 2 });
    expect([...sup.labels]).toEqual([19, 0]);
    expect(sup.classNames).toEqual(Array.from({ length: 20 }, (_, i) => `coarse${i}`));
  });

  it('accepts the parent of cifar-100-binary and names classes by number without the lists', () => {
    const dir = folder({ 'cifar-100-binary/train.bin': batch([[3, 31]]) });
    const set = loadCifar100({ dir, split: 'train' });
    expect([...set.labels]).toEqual([31]);
    expect(set.classNames[31]).toBe('31');
    expect(loadCifar100({ dir, split: 'train', labels: 'coarse' }).classNames.length).toBe(20);
  });

  it('checks both labels of every record and the record size of 3074', () => {
    const badFine = folder({
      'test.bin': batch([
        [1, 2],
        [3, 100],
      ]),
    });
    expect(() => loadCifar100({ dir: badFine, split: 'test', labels: 'coarse' })).toThrow(
      `loadCifar100: ${join(badFine, 'test.bin')} record 1 has fine label 100, expected 0..99`,
    );
    const badCoarse = folder({ 'test.bin': batch([[20, 2]]) });
    expect(() => loadCifar100({ dir: badCoarse, split: 'test' })).toThrow(
      `record 0 has coarse label 20, expected 0..19`,
    );
    // A CIFAR-10 batch is one byte short per record.
    const ten = folder({ 'test.bin': batch([[1], [2]]) });
    expect(() => loadCifar100({ dir: ten, split: 'test' })).toThrow(
      `is 6146 bytes, not a multiple of the record size 3074 (2 label bytes + 3072 pixel bytes)`,
    );
    expect(() => loadCifar100({ dir: ten, split: 'train' })).toThrow(
      `loadCifar100: missing file ${join(ten, 'train.bin')}`,
    );
    expect(() => loadCifar100({ dir: ten, split: 'test', labels: 'super' as 'fine' })).toThrow(
      "loadCifar100: labels must be 'fine' or 'coarse', got super",
    );
  });
});
