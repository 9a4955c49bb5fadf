/**
 * The STL-10 binary reader on tiny hand-made files: the column-major planes arrive as NHWC
 * with rows and columns where they belong, labels 1..10 become 0..9, the unlabelled split is
 * read through a file handle (a sparse 2.76 GB `unlabeled_X.bin` costs nothing with `limit`),
 * and every malformed input is an error naming the file and the values.
 */
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { STL10_CLASSES, loadStl10 } from '@disco/data';

const root = mkdtempSync(join(tmpdir(), 'disco-stl10-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const IMAGE_BYTES = 96 * 96 * 3;

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

/**
 * Images as STL-10 stores them, with pixel (row r, column c) of image `id` set to red = r,
 * green = c, blue = id: per image, three planes, each column by column (the row runs fastest).
 */
function images(ids: number[]): Uint8Array {
  const out = new Uint8Array(ids.length * IMAGE_BYTES);
  let i = 0;
  for (const id of ids) {
    for (let ch = 0; ch < 3; ch++) {
      for (let col = 0; col < 96; col++) {
        for (let row = 0; row < 96; row++) out[i++] = [row, col, id][ch]!;
      }
    }
  }
  return out;
}

/** The rows of pixel (row, col) of image `n` that do not hold [row, col, id]. */
function wrongPixels(set: { images: Uint8Array }, n: number, id: number): string[] {
  const wrong: string[] = [];
  for (let row = 0; row < 96; row++) {
    for (let col = 0; col < 96; col++) {
      const at = ((n * 96 + row) * 96 + col) * 3;
      const got = [...set.images.subarray(at, at + 3)];
      if (got.join() !== [row, col, id].join()) wrong.push(`(${row}, ${col}): ${got}`);
    }
  }
  return wrong.slice(0, 5);
}

describe('loadStl10', () => {
  it('reads column-major planes as NHWC: pixel (row r, col c) holds r, c', () => {
    const x = images([7, 8]);
    // By hand: red of (row 2, col 5) is plane byte 5 * 96 + 2 = 482; green is 9216 + 482.
    expect([x[482], x[9216 + 482], x[2 * 9216 + 482]]).toEqual([2, 5, 7]);
    const dir = folder({ 'test_X.bin': x, 'test_y.bin': Uint8Array.from([1, 10]) });
    const set = loadStl10({ dir, split: 'test' });
    expect([set.count, set.height, set.width, set.channels]).toEqual([2, 96, 96, 3]);
    expect([...set.labels]).toEqual([0, 9]);
    expect(set.labelledCount).toBe(2);
    expect(set.classNames).toBe(STL10_CLASSES);
    const at = (2 * 96 + 5) * 3; // NHWC offset of image 0, row 2, col 5
    expect([...set.images.subarray(at, at + 3)]).toEqual([2, 5, 7]);
    expect(wrongPixels(set, 0, 7)).toEqual([]);
    expect(wrongPixels(set, 1, 8)).toEqual([]);
  });

  it('labels unlabelled images 0 and puts them after the train images', () => {
    const names = STL10_CLASSES.map((n) => n.toUpperCase()).join('\n');
    const dir = folder({
      'stl10_binary/train_X.bin': images([1, 2, 3]),
      'stl10_binary/train_y.bin': Uint8Array.from([4, 5, 6]),
      'stl10_binary/unlabeled_X.bin': images([50, 51]),
      'stl10_binary/class_names.txt': `${names}\n`,
    });
    const all = loadStl10({ dir, split: 'train+unlabeled' });
    expect(all.count).toBe(5);
    expect(all.labelledCount).toBe(3);
    expect([...all.labels]).toEqual([3, 4, 5, 0, 0]);
    expect(all.classNames[7]).toBe('MONKEY');
    [1, 2, 3, 50, 51].forEach((id, n) => expect(wrongPixels(all, n, id)).toEqual([]));

    const head = loadStl10({ dir, split: 'train+unlabeled', limit: 4 });
    expect([head.count, head.labelledCount]).toEqual([4, 3]);
    expect(head.images).toEqual(all.images.subarray(0, 4 * IMAGE_BYTES));
    const two = loadStl10({ dir, split: 'train+unlabeled', limit: 2 });
    expect([two.count, two.labelledCount, ...two.labels]).toEqual([2, 2, 3, 4]);
    const unl = loadStl10({ dir, split: 'unlabeled' });
    expect([unl.count, unl.labelledCount, ...unl.labels]).toEqual([2, 0, 0, 0]);
    expect(wrongPixels(unl, 1, 51)).toEqual([]);
  });

  it('reads the head of a 2.76 GB unlabeled_X.bin with limit and refuses it without', () => {
    const dir = folder({});
    const path = join(dir, 'unlabeled_X.bin');
    // A sparse file of 100000 images (no disk used), the first two written for real.
    const fd = openSync(path, 'w');
    writeSync(fd, images([9, 10]));
    writeSync(fd, Uint8Array.of(0), 0, 1, 100000 * IMAGE_BYTES - 1);
    closeSync(fd);
    // Reading the whole file at once would fail: Node refuses files over 2 GiB.
    const head = loadStl10({ dir, split: 'unlabeled', limit: 3 });
    expect(head.count).toBe(3);
    expect(wrongPixels(head, 0, 9)).toEqual([]);
    expect(wrongPixels(head, 1, 10)).toEqual([]);
    expect(head.images.subarray(2 * IMAGE_BYTES).every((v) => v === 0)).toBe(true);
    expect(() => loadStl10({ dir, split: 'unlabeled' })).toThrow(
      'loadStl10: the unlabeled split is 100000 images, 2764800000 bytes, over maxBytes ' +
        '1073741824; pass limit (e.g. limit: 38836) or a larger maxBytes',
    );
  });

  it('applies maxBytes only without limit', () => {
    const dir = folder({ 'train_X.bin': images([1, 2]), 'train_y.bin': Uint8Array.from([1, 2]) });
    expect(() => loadStl10({ dir, split: 'train', maxBytes: IMAGE_BYTES })).toThrow(
      `the train split is 2 images, ${2 * IMAGE_BYTES} bytes, over maxBytes ${IMAGE_BYTES}`,
    );
    expect(loadStl10({ dir, split: 'train', maxBytes: IMAGE_BYTES, limit: 2 }).count).toBe(2);
    expect(loadStl10({ dir, split: 'train', maxBytes: 2 * IMAGE_BYTES }).count).toBe(2);
  });

  it('names a missing folder or file', () => {
    const gone = join(root, 'nowhere');
    expect(() => loadStl10({ dir: gone, split: 'train' })).toThrow(
      `loadStl10: missing folder ${gone}`,
    );
    const dir = folder({ 'train_X.bin': images([1]) });
    expect(() => loadStl10({ dir, split: 'train' })).toThrow(
      `loadStl10: missing file ${join(dir, 'train_y.bin')}: the train split needs ` +
        `train_X.bin, train_y.bin in ${dir}`,
    );
    expect(() => loadStl10({ dir, split: 'train+unlabeled' })).toThrow(
      `missing file ${join(dir, 'train_y.bin')}`,
    );
  });

  it('refuses image files of a wrong size, an empty one and an unreadable one', () => {
    const cut = folder({ 'test_X.bin': images([1, 2]).subarray(100), 'test_y.bin': '\x01\x01' });
    expect(() => loadStl10({ dir: cut, split: 'test' })).toThrow(
      `loadStl10: ${join(cut, 'test_X.bin')} is 55196 bytes, not a multiple of the image ` +
        `size 27648 (3 x 96 x 96)`,
    );
    const empty = folder({ 'unlabeled_X.bin': new Uint8Array(0) });
    expect(() => loadStl10({ dir: empty, split: 'unlabeled' })).toThrow(
      `loadStl10: ${join(empty, 'unlabeled_X.bin')} is empty (0 bytes)`,
    );
    const dir = folder({ 'test_X.bin': images([1]) });
    mkdirSync(join(dir, 'test_y.bin'));
    expect(() => loadStl10({ dir, split: 'test' })).toThrow(
      `loadStl10: cannot read ${join(dir, 'test_y.bin')}: not a regular file`,
    );
  });

  it('refuses labels outside 1..10 and a label count unlike the image count', () => {
    const x = images([1, 2, 3]);
    const zero = folder({ 'train_X.bin': x, 'train_y.bin': Uint8Array.from([1, 0, 2]) });
    expect(() => loadStl10({ dir: zero, split: 'train' })).toThrow(
      `loadStl10: ${join(zero, 'train_y.bin')} label 1 is 0, expected 1..10`,
    );
    const eleven = folder({ 'train_X.bin': x, 'train_y.bin': Uint8Array.from([1, 2, 11]) });
    expect(() => loadStl10({ dir: eleven, split: 'train', limit: 1 })).toThrow(
      /train_y\.bin label 2 is 11, expected 1\.\.10/,
    );
    const short = folder({ 'train_X.bin': x, 'train_y.bin': Uint8Array.from([1, 2]) });
    expect(() => loadStl10({ dir: short, split: 'train' })).toThrow(
      `loadStl10: ${join(short, 'train_y.bin')} holds 2 labels but ` +
        `${join(short, 'train_X.bin')} holds 3 images; expected one label byte per image`,
    );
    const names = folder({
      'test_X.bin': images([1]),
      'test_y.bin': '\x01',
      'class_names.txt': 'x',
    });
    expect(() => loadStl10({ dir: names, split: 'test' })).toThrow(
      `loadStl10: ${join(names, 'class_names.txt')} lists 1 class names, expected 10`,
    );
  });

  it('refuses bad options', () => {
    const dir = folder({});
    expect(() => loadStl10({ dir, split: 'val' as 'test' })).toThrow(
      "loadStl10: split must be 'train', 'test', 'unlabeled' or 'train+unlabeled', got val",
    );
    expect(() => loadStl10({ dir, split: 'test', limit: 1.5 })).toThrow(
      'loadStl10: limit must be a positive integer, got 1.5',
    );
    expect(() => loadStl10({ dir, split: 'test', maxBytes: 0 })).toThrow(
      'loadStl10: maxBytes must be a positive number, got 0',
    );
  });
});
