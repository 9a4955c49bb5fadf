/**
 * CIFAR-10 and CIFAR-100, binary version (Krizhevsky 2009, "Learning Multiple Layers of
 * Features from Tiny Images", https://www.cs.toronto.edu/~kriz/cifar.html): 32x32 colour
 * images, 50000 train and 10000 test. A `.bin` file is a run of fixed-size records: the label
 * byte(s), then 3072 pixel bytes holding the 1024 red values of the image in row-major order,
 * then the 1024 green, then the 1024 blue. CIFAR-10 records have one label byte (0..9);
 * CIFAR-100 records have two, the coarse label (0..19) then the fine one (0..99). The loaders
 * turn the three planes into NHWC.
 */
import {
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';

import type { ImageSet } from './image-set.js';

/** CIFAR-10 class names, by label (the order of `batches.meta.txt`). */
export const CIFAR10_CLASSES: readonly string[] = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
];

const SIDE = 32;
const PIXELS = SIDE * SIDE;
const IMAGE_BYTES = 3 * PIXELS;
/** Largest class-name file read; the real ones are under 1 kB. */
const MAX_NAMES_BYTES = 1 << 20;

/** What tells the two CIFAR binary formats apart. */
interface CifarFormat {
  fn: string;
  /** The folder the official archive unpacks to, accepted below `dir`. */
  subfolder: string;
  files: { train: readonly string[]; test: readonly string[] };
  /** The number of classes of each label byte, in record order. */
  labelClasses: readonly number[];
  labelNames: readonly string[];
}

const CIFAR10: CifarFormat = {
  fn: 'loadCifar10',
  subfolder: 'cifar-10-batches-bin',
  files: {
    train: [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`),
    test: ['test_batch.bin'],
  },
  labelClasses: [10],
  labelNames: ['label'],
};

const CIFAR100: CifarFormat = {
  fn: 'loadCifar100',
  subfolder: 'cifar-100-binary',
  files: { train: ['train.bin'], test: ['test.bin'] },
  labelClasses: [20, 100],
  labelNames: ['coarse label', 'fine label'],
};

/** Which CIFAR-10 files `loadCifar10` reads, and how many images. */
export interface Cifar10Options {
  /** Folder holding `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin`, or their
   * parent (the folder `cifar-10-batches-bin` is then looked for inside it). */
  dir: string;
  /** `train`: the five data batches in order (50000 images); `test`: 10000 images. */
  split: 'train' | 'test';
  /** Keep only the first `limit` images; only their bytes are read. */
  limit?: number;
}

/** Which CIFAR-100 file `loadCifar100` reads, which labels, and how many images. */
export interface Cifar100Options {
  /** Folder holding `train.bin` and `test.bin`, or its parent (with `cifar-100-binary`). */
  dir: string;
  /** `train`: `train.bin` (50000 images); `test`: `test.bin` (10000 images). */
  split: 'train' | 'test';
  /** Which label to return: the 100 fine classes (default) or the 20 superclasses. */
  labels?: 'fine' | 'coarse';
  /** Keep only the first `limit` images; only their bytes are read. */
  limit?: number;
}

/**
 * Loads one split of CIFAR-10 (binary version).
 * @returns `count * 32 * 32 * 3` bytes of NHWC images and `count` labels in 0..9. Class
 *   names come from `batches.meta.txt` when the folder has it, else `CIFAR10_CLASSES`.
 * @throws when the folder or a batch file is missing or unreadable, a file is empty or its
 *   size is not a multiple of 3073 bytes, a label is over 9, `batches.meta.txt` does not list
 *   10 names, or `limit` is not a positive integer; the message names the file and values.
 */
export function loadCifar10(opts: Cifar10Options): ImageSet {
  const { dir, split } = checkOptions(CIFAR10.fn, opts);
  const folder = resolveFolder(CIFAR10, dir, split);
  const set = readRecords(CIFAR10, folder, split, opts.limit, 0);
  const names = readClassNames(join(folder, 'batches.meta.txt'), 10, CIFAR10.fn);
  return { ...set, classNames: names ?? CIFAR10_CLASSES };
}

/**
 * Loads one split of CIFAR-100 (binary version) with its fine or coarse labels.
 * @returns `count * 32 * 32 * 3` bytes of NHWC images and `count` labels, in 0..99 (fine) or
 *   0..19 (coarse). Class names come from `fine_label_names.txt` / `coarse_label_names.txt`
 *   when present, else they are the label numbers as strings (`'0'`, `'1'`, ...).
 * @throws as `loadCifar10`, with a record size of 3074 bytes and both labels checked in every
 *   record (coarse under 20, fine under 100).
 */
export function loadCifar100(opts: Cifar100Options): ImageSet {
  const { dir, split } = checkOptions(CIFAR100.fn, opts);
  const labels = opts.labels ?? 'fine';
  if (labels !== 'fine' && labels !== 'coarse') {
    throw new Error(`loadCifar100: labels must be 'fine' or 'coarse', got ${String(labels)}`);
  }
  const folder = resolveFolder(CIFAR100, dir, split);
  const set = readRecords(CIFAR100, folder, split, opts.limit, labels === 'fine' ? 1 : 0);
  const classes = labels === 'fine' ? 100 : 20;
  const names = readClassNames(join(folder, `${labels}_label_names.txt`), classes, CIFAR100.fn);
  return { ...set, classNames: names ?? Array.from({ length: classes }, (_, i) => String(i)) };
}

function checkOptions(
  fn: string,
  opts: { dir: string; split: string; limit?: number },
): { dir: string; split: 'train' | 'test' } {
  const { dir, split, limit } = opts;
  if (split !== 'train' && split !== 'test') {
    throw new Error(`${fn}: split must be 'train' or 'test', got ${String(split)}`);
  }
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    throw new Error(`${fn}: limit must be a positive integer, got ${limit}`);
  }
  if (!isFolder(dir)) {
    throw new Error(`${fn}: missing folder ${dir}: expected a folder of CIFAR binary files`);
  }
  return { dir, split };
}

/** `dir` itself, or its archive subfolder when only that one holds the split's files. */
function resolveFolder(format: CifarFormat, dir: string, split: 'train' | 'test'): string {
  const sub = join(dir, format.subfolder);
  const here = format.files[split].some((name) => existsSync(join(dir, name)));
  return !here && isFolder(sub) ? sub : dir;
}

/** Reads the first `limit` records of a split's files, planes turned to NHWC. */
function readRecords(
  format: CifarFormat,
  folder: string,
  split: 'train' | 'test',
  limit: number | undefined,
  labelByte: number,
): Omit<ImageSet, 'classNames'> {
  const { fn, labelClasses } = format;
  const labelBytes = labelClasses.length;
  const recordBytes = labelBytes + IMAGE_BYTES;

  // Sizes first, so a bad file fails before anything is allocated or read.
  const files = format.files[split].map((name) => {
    const path = join(folder, name);
    if (!existsSync(path)) {
      throw new Error(
        `${fn}: missing file ${path}: the ${split} split needs ` +
          `${format.files[split].join(', ')} in ${folder}`,
      );
    }
    const size = fileSize(path, fn);
    if (size === 0) throw new Error(`${fn}: ${path} is empty (0 bytes)`);
    if (size % recordBytes !== 0) {
      throw new Error(
        `${fn}: ${path} is ${size} bytes, not a multiple of the record size ${recordBytes} ` +
          `(${labelBytes} label byte${labelBytes > 1 ? 's' : ''} + ${IMAGE_BYTES} pixel bytes)`,
      );
    }
    return { path, records: size / recordBytes };
  });
  const total = files.reduce((a, f) => a + f.records, 0);
  const count = limit === undefined ? total : Math.min(limit, total);

  const images = new Uint8Array(count * IMAGE_BYTES);
  const labels = new Uint8Array(count);
  let n = 0;
  for (const { path, records } of files) {
    const take = Math.min(records, count - n);
    if (take === 0) break;
    const bytes = readHead(path, take * recordBytes, fn);
    for (let r = 0; r < take; r++, n++) {
      const rec = r * recordBytes;
      for (let k = 0; k < labelBytes; k++) {
        const value = bytes[rec + k]!;
        if (value >= labelClasses[k]!) {
          throw new Error(
            `${fn}: ${path} record ${r} has ${format.labelNames[k]} ${value}, ` +
              `expected 0..${labelClasses[k]! - 1}`,
          );
        }
      }
      labels[n] = bytes[rec + labelByte]!;
      // Plane c, pixel p of the record -> channel c of pixel p in NHWC.
      const src = rec + labelBytes;
      const dst = n * IMAGE_BYTES;
      for (let p = 0; p < PIXELS; p++) {
        images[dst + 3 * p] = bytes[src + p]!;
        images[dst + 3 * p + 1] = bytes[src + PIXELS + p]!;
        images[dst + 3 * p + 2] = bytes[src + 2 * PIXELS + p]!;
      }
    }
  }
  return { images, labels, count, height: SIDE, width: SIDE, channels: 3 };
}

function isFolder(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory();
}

/**
 * The size of a regular file, in bytes.
 * @internal shared with the STL-10 reader.
 * @throws naming `fn` and the path when it cannot be read or is not a regular file.
 */
export function fileSize(path: string, fn: string): number {
  const fd = openFile(path, fn);
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new Error(`${fn}: cannot read ${path}: not a regular file`);
    return stat.size;
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens a file for reading.
 * @internal shared with the STL-10 reader.
 */
export function openFile(path: string, fn: string): number {
  try {
    return openSync(path, 'r');
  } catch (err) {
    throw new Error(`${fn}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/**
 * Fills `into` with the bytes of `fd` from `position` on, however many reads that takes.
 * @internal shared with the STL-10 reader.
 * @throws when the file ends first (it shrank while being read) or a read fails.
 */
export function readFully(
  fd: number,
  into: Uint8Array,
  position: number,
  path: string,
  fn: string,
): void {
  for (let done = 0; done < into.length;) {
    let n: number;
    try {
      n = readSync(fd, into, done, into.length - done, position + done);
    } catch (err) {
      throw new Error(`${fn}: cannot read ${path}: ${(err as Error).message}`);
    }
    if (n === 0) {
      throw new Error(
        `${fn}: ${path} ends at byte ${position + done}, expected at least ` +
          `${position + into.length} bytes`,
      );
    }
    done += n;
  }
}

/** The first `length` bytes of a file, without reading the rest. */
function readHead(path: string, length: number, fn: string): Uint8Array {
  const out = new Uint8Array(length);
  const fd = openFile(path, fn);
  try {
    readFully(fd, out, 0, path, fn);
  } finally {
    closeSync(fd);
  }
  return out;
}

/**
 * The class names of a text file with one name a line (blank lines ignored), or undefined
 * when the file does not exist.
 * @internal shared with the STL-10 reader.
 * @throws when the file cannot be read, is over 1 MiB or does not list `expected` names.
 */
export function readClassNames(
  path: string,
  expected: number,
  fn: string,
): readonly string[] | undefined {
  if (!existsSync(path)) return undefined;
  const size = fileSize(path, fn);
  if (size > MAX_NAMES_BYTES) {
    throw new Error(`${fn}: ${path} is ${size} bytes, too large for a list of class names`);
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`${fn}: cannot read ${path}: ${(err as Error).message}`);
  }
  const names = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0);
  if (names.length !== expected) {
    throw new Error(
      `${fn}: ${path} lists ${names.length} class names, expected ${expected} (one a line)`,
    );
  }
  return names;
}
