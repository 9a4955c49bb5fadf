/**
 * Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, https://arxiv.org/abs/1708.07747): 28x28
 * grayscale images of 10 clothing classes, 60000 train and 10000 test, in IDX files. By
 * default the loader reads the class-balanced subset shipped with this package
 * (assets/fashion-mnist-subset: 5000 train, 2000 test); point `dir` at the full set for real runs.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { assetPath } from './assets.js';
import { readIdx, type IdxArray } from './idx.js';
import type { ImageSet } from './image-set.js';

/** Where the Debian package `dataset-fashion-mnist` installs the full set. */
export const FULL_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** Class names, by label. */
export const FASHION_MNIST_CLASSES: readonly string[] = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

/**
 * Per-channel mean and standard deviation of the full train split's pixels scaled to [0, 1]
 * (the values to normalise Fashion-MNIST with; the test suite recomputes them).
 */
export const FASHION_MNIST_MEAN: readonly number[] = [0.286];
/** Per-channel standard deviation of the full train split's pixels in [0, 1] (see the mean). */
export const FASHION_MNIST_STD: readonly number[] = [0.353];

/** A split's standard file names (the `.gz` ones; plain files without `.gz` also load). */
const FILE_NAMES = {
  train: { images: 'train-images-idx3-ubyte.gz', labels: 'train-labels-idx1-ubyte.gz' },
  test: { images: 't10k-images-idx3-ubyte.gz', labels: 't10k-labels-idx1-ubyte.gz' },
} as const;

/** Which Fashion-MNIST files `loadFashionMnist` reads, and how many images. */
export interface FashionMnistOptions {
  /**
   * Folder with the four IDX files (gzipped or plain). Default: the subset shipped with
   * @disco/data; `FULL_FASHION_MNIST_DIR` for the full set.
   */
  dir?: string;
  /** `train`: `train-*` (60000 images in the full set); `test`: `t10k-*` (10000). */
  split: 'train' | 'test';
  /** Keep only the first `limit` images. */
  limit?: number;
}

/** The default folder: the subset shipped in `packages/data/assets`. */
export function fashionMnistSubsetDir(): string {
  return assetPath('fashion-mnist-subset');
}

function locate(dir: string, gzName: string): string {
  const gz = join(dir, gzName);
  if (existsSync(gz)) return gz;
  const plain = gz.slice(0, -'.gz'.length);
  if (existsSync(plain)) return plain;
  throw new Error(
    `loadFashionMnist: missing file ${gz} (or ${plain}): expected a Fashion-MNIST IDX file in ${dir}`,
  );
}

function expectUint8(arr: IdxArray, path: string, ndim: number): Uint8Array {
  if (arr.dtype !== 'uint8' || arr.shape.length !== ndim) {
    throw new Error(
      `loadFashionMnist: ${path} must hold a ${ndim}-d uint8 array, ` +
        `got ${arr.shape.length}-d ${arr.dtype} [${arr.shape.join(', ')}]`,
    );
  }
  return arr.data as Uint8Array;
}

/**
 * Loads one split of Fashion-MNIST.
 * @returns `images` of `count * 28 * 28` bytes (NHWC with C = 1) and `count` labels in 0..9.
 * @throws when the folder or a file is missing, a file is not valid IDX, image and label
 *   counts differ, images are not 28x28, a label is out of range, or `limit` is not a
 *   positive integer; the message names the path and what was expected.
 */
export function loadFashionMnist(opts: FashionMnistOptions): ImageSet {
  const { split, limit } = opts;
  if (split !== 'train' && split !== 'test') {
    throw new Error(`loadFashionMnist: split must be 'train' or 'test', got ${String(split)}`);
  }
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    throw new Error(`loadFashionMnist: limit must be a positive integer, got ${limit}`);
  }
  const dir = opts.dir ?? fashionMnistSubsetDir();
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new Error(
      `loadFashionMnist: missing folder ${dir}: expected a folder holding ` +
        `${FILE_NAMES[split].images} and ${FILE_NAMES[split].labels}`,
    );
  }

  const imagesPath = locate(dir, FILE_NAMES[split].images);
  const labelsPath = locate(dir, FILE_NAMES[split].labels);
  const imagesArr = readIdx(imagesPath);
  const labelsArr = readIdx(labelsPath);
  let images = expectUint8(imagesArr, imagesPath, 3);
  let labels = expectUint8(labelsArr, labelsPath, 1);
  const [total, height, width] = imagesArr.shape as [number, number, number];
  if (height !== 28 || width !== 28) {
    throw new Error(
      `loadFashionMnist: ${imagesPath} must hold 28x28 images, got ${height}x${width}`,
    );
  }
  if (labels.length !== total) {
    throw new Error(
      `loadFashionMnist: ${imagesPath} holds ${total} images but ${labelsPath} ` +
        `holds ${labels.length} labels; expected the same count`,
    );
  }
  const bad = labels.findIndex((l) => l >= FASHION_MNIST_CLASSES.length);
  if (bad >= 0) {
    throw new Error(`loadFashionMnist: ${labelsPath} label ${bad} is ${labels[bad]}, not in 0..9`);
  }

  const count = limit === undefined ? total : Math.min(limit, total);
  if (count < total) {
    images = images.slice(0, count * height * width);
    labels = labels.slice(0, count);
  }
  return {
    images,
    labels,
    count,
    height,
    width,
    channels: 1,
    classNames: FASHION_MNIST_CLASSES,
  };
}
