import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  FASHION_MNIST_CLASSES,
  FASHION_MNIST_MEAN,
  FASHION_MNIST_STD,
  FULL_FASHION_MNIST_DIR,
  fashionMnistSubsetDir,
  loadFashionMnist,
  type ImageSet,
} from '@disco/data';

function classCounts(set: ImageSet): number[] {
  const counts = new Array<number>(10).fill(0);
  for (const l of set.labels) counts[l]!++;
  return counts;
}

const haveFull = existsSync(join(FULL_FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz'));
if (!haveFull) {
  console.warn(
    `fashion-mnist.test: skipping full-set tests, ${FULL_FASHION_MNIST_DIR} not found ` +
      `(install the Debian package dataset-fashion-mnist)`,
  );
}

describe('loadFashionMnist on the shipped subset', () => {
  it('finds the subset in the package assets folder', () => {
    const dir = fashionMnistSubsetDir();
    expect(dir.endsWith(['packages', 'data', 'assets', 'fashion-mnist-subset'].join(sep))).toBe(
      true,
    );
    expect(readFileSync(join(dir, 'LICENSE'), 'utf8')).toMatch(/Copyright \(c\) 2017 Zalando SE/);
  });

  it('loads 5000 train images, 500 per class', () => {
    const train = loadFashionMnist({ split: 'train' });
    expect(train.count).toBe(5000);
    expect([train.height, train.width, train.channels]).toEqual([28, 28, 1]);
    expect(train.images.length).toBe(5000 * 28 * 28);
    expect(train.labels.length).toBe(5000);
    expect(classCounts(train)).toEqual(new Array(10).fill(500));
    expect(train.classNames).toEqual(FASHION_MNIST_CLASSES);
    expect(train.classNames[9]).toBe('Ankle boot');
  });

  it('loads 2000 test images, 200 per class, and honours limit', () => {
    const test = loadFashionMnist({ split: 'test' });
    expect(test.count).toBe(2000);
    expect(classCounts(test)).toEqual(new Array(10).fill(200));
    const few = loadFashionMnist({ split: 'test', limit: 7 });
    expect(few.count).toBe(7);
    expect(few.images).toEqual(test.images.subarray(0, 7 * 784));
    expect(few.labels).toEqual(test.labels.subarray(0, 7));
  });

  it('refuses a bad split or limit', () => {
    expect(() => loadFashionMnist({ split: 'val' as 'train' })).toThrow(/split must be.*val/);
    expect(() => loadFashionMnist({ split: 'train', limit: 0 })).toThrow(/limit.*got 0/);
  });
});

describe('loadFashionMnist errors', () => {
  it('names a missing folder and what it should hold', () => {
    expect(() => loadFashionMnist({ dir: '/nonexistent/fmnist', split: 'train' })).toThrow(
      /missing folder \/nonexistent\/fmnist: expected a folder holding train-images-idx3-ubyte/,
    );
  });

  it('names a missing file in an existing folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-fmnist-'));
    try {
      expect(() => loadFashionMnist({ dir, split: 'test' })).toThrow(
        new RegExp(`missing file ${dir}/t10k-images-idx3-ubyte\\.gz`),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!haveFull)('loadFashionMnist on the full set', () => {
  it('loads 60000 train and 10000 test images, balanced', () => {
    const train = loadFashionMnist({ dir: FULL_FASHION_MNIST_DIR, split: 'train' });
    const test = loadFashionMnist({ dir: FULL_FASHION_MNIST_DIR, split: 'test' });
    expect(train.count).toBe(60000);
    expect(train.images.length).toBe(60000 * 784);
    expect(classCounts(train)).toEqual(new Array(10).fill(6000));
    expect(test.count).toBe(10000);
    expect(classCounts(test)).toEqual(new Array(10).fill(1000));

    // The published normalisation constants match the train pixels.
    let sum = 0;
    let sumSq = 0;
    for (const v of train.images) {
      sum += v;
      sumSq += v * v;
    }
    const n = train.images.length;
    const mean = sum / n / 255;
    const std = Math.sqrt(sumSq / n / 255 ** 2 - mean * mean);
    expect(mean).toBeCloseTo(FASHION_MNIST_MEAN[0]!, 3);
    expect(std).toBeCloseTo(FASHION_MNIST_STD[0]!, 3);

    // The subset's images are the full set's at the recorded indices.
    const indices = JSON.parse(
      readFileSync(join(fashionMnistSubsetDir(), 'indices.json'), 'utf8'),
    ) as { train: number[]; test: number[] };
    for (const [split, full] of [
      ['train', train],
      ['test', test],
    ] as const) {
      const sub = loadFashionMnist({ split });
      expect(indices[split].length).toBe(sub.count);
      for (let k = 0; k < sub.count; k += 97) {
        const src = indices[split][k]!;
        expect(sub.labels[k]).toBe(full.labels[src]);
        expect(sub.images.subarray(k * 784, (k + 1) * 784)).toEqual(
          full.images.subarray(src * 784, (src + 1) * 784),
        );
      }
    }
  });
});
