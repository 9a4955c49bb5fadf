/**
 * STL-10, binary version (Coates, Lee and Ng 2011, "An Analysis of Single-Layer Networks in
 * Unsupervised Feature Learning", https://cs.stanford.edu/~acoates/stl10/): 96x96 colour
 * images of 10 classes, 5000 labelled train, 8000 test and 100000 unlabelled images. An
 * `*_X.bin` file stores each image as three 96x96 planes (red, green, blue), each plane in
 * column-major order: byte `c * 9216 + x * 96 + y` of an image is channel c of the pixel at
 * row y, column x (the set was written from MATLAB). An `*_y.bin` file holds one byte per
 * image, the class 1..10. The loader returns NHWC images and labels 0..9.
 */
import { closeSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { fileSize, openFile, readClassNames, readFully } from './cifar.js';
import type { ImageSet } from './image-set.js';

/** STL-10 class names, by label (the order of `class_names.txt`). */
export const STL10_CLASSES: readonly string[] = [
  'airplane',
  'bird',
  'car',
  'cat',
  'deer',
  'dog',
  'horse',
  'monkey',
  'ship',
  'truck',
];

/** The STL-10 splits; `train+unlabeled` is the 5000 train images then the 100000 unlabelled. */
export type Stl10Split = 'train' | 'test' | 'unlabeled' | 'train+unlabeled';

/** Which STL-10 split `loadStl10` reads, and how many images. */
export interface Stl10Options {
  /** Folder holding the `.bin` files, or its parent (the folder `stl10_binary` is then
   * looked for inside it). */
  dir: string;
  /** The split to read (`train`: 5000 labelled, `test`: 8000, `unlabeled`: 100000). */
  split: Stl10Split;
  /** Keep only the first `limit` images (of the train images first, for `train+unlabeled`);
   * only their bytes are read. */
  limit?: number;
  /**
   * The most image bytes loaded when `limit` is not given (default 1 GiB). The train split
   * is 138 MB and the test split 221 MB; `unlabeled_X.bin` is 2.76 GB, so the unlabelled
   * splits need a `limit` or a larger budget.
   */
  maxBytes?: number;
}

/**
 * An STL-10 split. The first `labelledCount` images carry their class label; the ones after
 * them come from `unlabeled_X.bin` and have label 0, which is not a class.
 */
export interface Stl10Set extends ImageSet {
  /** Images, from the first, that carry a class label. */
  labelledCount: number;
}

const SIDE = 96;
const PLANE = SIDE * SIDE;
const IMAGE_BYTES = 3 * PLANE;
const DEFAULT_MAX_BYTES = 2 ** 30;
/** Images read and transposed at a time (7 MB). */
const CHUNK_IMAGES = 256;
const FN = 'loadStl10';

const PARTS: Record<Stl10Split, readonly { x: string; y?: string }[]> = {
  train: [{ x: 'train_X.bin', y: 'train_y.bin' }],
  test: [{ x: 'test_X.bin', y: 'test_y.bin' }],
  unlabeled: [{ x: 'unlabeled_X.bin' }],
  'train+unlabeled': [{ x: 'train_X.bin', y: 'train_y.bin' }, { x: 'unlabeled_X.bin' }],
};

/**
 * Loads one split of STL-10 (binary version), reading the image files in chunks through a
 * file handle, so a `limit` reads only the images it keeps.
 * @returns `count * 96 * 96 * 3` bytes of NHWC images, `count` labels (0..9 for the first
 *   `labelledCount` images, 0 for unlabelled ones). Class names come from `class_names.txt`
 *   when present, else `STL10_CLASSES`.
 * @throws when the folder or a file is missing or unreadable, an image file is empty or not a
 *   multiple of 27648 bytes, a label file's length differs from its image count or holds a
 *   value outside 1..10, the split without `limit` is over `maxBytes`, or an option is
 *   invalid; the message names the file and values.
 */
export function loadStl10(opts: Stl10Options): Stl10Set {
  const { dir, split, limit } = opts;
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  if (!Object.hasOwn(PARTS, split)) {
    throw new Error(
      `${FN}: split must be 'train', 'test', 'unlabeled' or 'train+unlabeled', got ${String(split)}`,
    );
  }
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    throw new Error(`${FN}: limit must be a positive integer, got ${limit}`);
  }
  if (!(maxBytes > 0))
    throw new Error(`${FN}: maxBytes must be a positive number, got ${maxBytes}`);
  if (!isFolder(dir)) {
    throw new Error(`${FN}: missing folder ${dir}: expected a folder of STL-10 binary files`);
  }
  const sub = join(dir, 'stl10_binary');
  const here = PARTS[split].some((p) => existsSync(join(dir, p.x)));
  const folder = !here && isFolder(sub) ? sub : dir;

  // Sizes and labels first, so a bad file fails before the images are allocated or read.
  let remaining = limit ?? Infinity;
  const parts = PARTS[split].map((part) => {
    const xPath = locate(folder, part.x, split);
    const size = fileSize(xPath, FN);
    if (size === 0) throw new Error(`${FN}: ${xPath} is empty (0 bytes)`);
    if (size % IMAGE_BYTES !== 0) {
      throw new Error(
        `${FN}: ${xPath} is ${size} bytes, not a multiple of the image size ${IMAGE_BYTES} ` +
          `(3 x 96 x 96)`,
      );
    }
    const images = size / IMAGE_BYTES;
    const take = Math.min(images, remaining);
    remaining -= take;
    const labels =
      part.y === undefined ? undefined : readLabels(locate(folder, part.y, split), xPath, images);
    return { xPath, take, labels };
  });
  const count = parts.reduce((a, p) => a + p.take, 0);
  if (limit === undefined && count * IMAGE_BYTES > maxBytes) {
    throw new Error(
      `${FN}: the ${split} split is ${count} images, ${count * IMAGE_BYTES} bytes, over ` +
        `maxBytes ${maxBytes}; pass limit (e.g. limit: ${Math.floor(maxBytes / IMAGE_BYTES)}) ` +
        `or a larger maxBytes`,
    );
  }

  const images = new Uint8Array(count * IMAGE_BYTES);
  const labels = new Uint8Array(count);
  let n = 0;
  let labelledCount = 0;
  for (const { xPath, take, labels: partLabels } of parts) {
    if (partLabels !== undefined) {
      // Classes 1..10 in the file -> labels 0..9.
      for (let i = 0; i < take; i++) labels[n + i] = partLabels[i]! - 1;
      labelledCount += take;
    }
    readImages(xPath, take, images, n);
    n += take;
  }

  const names = readClassNames(join(folder, 'class_names.txt'), 10, FN);
  return {
    images,
    labels,
    count,
    height: SIDE,
    width: SIDE,
    channels: 3,
    classNames: names ?? STL10_CLASSES,
    labelledCount,
  };
}

function isFolder(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory();
}

function locate(folder: string, name: string, split: Stl10Split): string {
  const path = join(folder, name);
  if (!existsSync(path)) {
    const needs = PARTS[split].flatMap((p) => (p.y ? [p.x, p.y] : [p.x]));
    throw new Error(
      `${FN}: missing file ${path}: the ${split} split needs ${needs.join(', ')} in ${folder}`,
    );
  }
  return path;
}

/** The labels of `yPath` (1..10, one per image of `xPath`), checked. */
function readLabels(yPath: string, xPath: string, images: number): Uint8Array {
  const size = fileSize(yPath, FN);
  if (size !== images) {
    throw new Error(
      `${FN}: ${yPath} holds ${size} labels but ${xPath} holds ${images} images; ` +
        `expected one label byte per image`,
    );
  }
  const labels = new Uint8Array(size);
  const fd = openFile(yPath, FN);
  try {
    readFully(fd, labels, 0, yPath, FN);
  } finally {
    closeSync(fd);
  }
  const bad = labels.findIndex((v) => v < 1 || v > 10);
  if (bad >= 0) {
    throw new Error(`${FN}: ${yPath} label ${bad} is ${labels[bad]}, expected 1..10`);
  }
  return labels;
}

/** Reads the first `take` images of `path` into `out` from image `at` on, as NHWC. */
function readImages(path: string, take: number, out: Uint8Array, at: number): void {
  if (take === 0) return;
  const chunk = new Uint8Array(Math.min(take, CHUNK_IMAGES) * IMAGE_BYTES);
  const fd = openFile(path, FN);
  try {
    for (let first = 0; first < take; first += CHUNK_IMAGES) {
      const n = Math.min(CHUNK_IMAGES, take - first);
      const buf = chunk.subarray(0, n * IMAGE_BYTES);
      readFully(fd, buf, first * IMAGE_BYTES, path, FN);
      for (let i = 0; i < n; i++) {
        const src = i * IMAGE_BYTES;
        const dst = (at + first + i) * IMAGE_BYTES;
        // Column-major planes: byte c * 9216 + x * 96 + y is channel c at row y, column x.
        for (let c = 0; c < 3; c++) {
          for (let x = 0; x < SIDE; x++) {
            const col = src + c * PLANE + x * SIDE;
            for (let y = 0; y < SIDE; y++) out[dst + (y * SIDE + x) * 3 + c] = buf[col + y]!;
          }
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}
