/**
 * What `--data` names, recognised from the files in the folder: Fashion-MNIST (IDX), CIFAR-10
 * or CIFAR-100 (binary), STL-10 (binary), or a folder of images (labelled by subfolder, or
 * not). Every kind gives a training set, the set kNN and the linear probe fit on, a test set
 * when the data has labels, and the per-channel normalisation of [0, 1] pixels.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  FASHION_MNIST_MEAN,
  FASHION_MNIST_STD,
  type ImageSet,
  loadCifar10,
  loadCifar100,
  loadFashionMnist,
  loadImageFolder,
  loadStl10,
} from '@disco/data';
import { Rng } from '@disco/core';

/** The splits of a dataset as training uses them. */
export interface TrainData {
  /** What was recognised, e.g. `cifar10 /data/cifar-10-batches-bin`. */
  kind: 'fashion-mnist' | 'cifar10' | 'cifar100' | 'stl10' | 'image-folder';
  /** Images trained on (the first `limit` when a limit is set). */
  train: ImageSet;
  /** Images kNN and the probe are fitted on (the whole train split). */
  evalTrain: ImageSet;
  /** Labelled images scored; null for unlabelled data (no evaluation then). */
  test: ImageSet | null;
  /** Per-channel normalisation of [0, 1] pixels. */
  mean: number[];
  std: number[];
  /** One line on what was read, for the log. */
  describe: string;
}

const has = (dir: string, ...names: string[]) => names.some((n) => existsSync(join(dir, n)));

/** The first of `dir` and its usual subfolders that holds `marker`. */
function withSub(dir: string, subs: string[], marker: string): string | null {
  for (const d of [dir, ...subs.map((s) => join(dir, s))]) if (has(d, marker)) return d;
  return null;
}

/** Per-channel mean and standard deviation of an image set's pixels scaled to [0, 1]. */
export function channelStats(set: ImageSet): { mean: number[]; std: number[] } {
  const c = set.channels;
  const sum = new Float64Array(c);
  const sq = new Float64Array(c);
  const px = set.images;
  for (let i = 0; i < px.length; i++) {
    const v = px[i]! / 255;
    sum[i % c]! += v;
    sq[i % c]! += v * v;
  }
  const n = px.length / c;
  const mean = [...sum].map((s) => s / n);
  const std = [...sq].map((s, k) => Math.sqrt(Math.max(s / n - mean[k]! ** 2, 1e-12)));
  return { mean, std };
}

/** The rows `idx` of an image set. */
function subset(set: ImageSet, idx: Int32Array | number[]): ImageSet {
  const per = set.height * set.width * set.channels;
  const images = new Uint8Array(idx.length * per);
  const labels = new Uint8Array(idx.length);
  idx.forEach((r, i) => {
    images.set(set.images.subarray(r * per, (r + 1) * per), i * per);
    labels[i] = set.labels[r]!;
  });
  return { ...set, images, labels, count: idx.length };
}

function firstRows(set: ImageSet, limit: number | undefined): ImageSet {
  if (limit === undefined || limit >= set.count) return set;
  return subset(
    set,
    Array.from({ length: limit }, (_, i) => i),
  );
}

/**
 * Opens `data` (undefined: the Fashion-MNIST subset shipped with @disco/data). A folder of
 * images is decoded at `imageSize` with `channels` (default 3); when it has `train/` and `val/`
 * (or `test/`) subfolders those are the splits, else a labelled folder keeps a fixed, seeded
 * 20% of its images out of training for the test split.
 * @throws naming the folder when it holds none of the recognised layouts.
 */
export async function openTrainData(opts: {
  data?: string;
  limit?: number;
  imageSize: number;
  channels?: 1 | 3;
  seed?: number;
}): Promise<TrainData> {
  const dir = opts.data;
  const fmnist = { mean: [...FASHION_MNIST_MEAN], std: [...FASHION_MNIST_STD] };
  if (dir === undefined || has(dir, 'train-images-idx3-ubyte.gz', 'train-images-idx3-ubyte')) {
    const full = loadFashionMnist({ dir, split: 'train' });
    return {
      kind: 'fashion-mnist',
      train: firstRows(full, opts.limit),
      evalTrain: full,
      test: loadFashionMnist({ dir, split: 'test' }),
      ...fmnist,
      describe: `Fashion-MNIST ${dir ?? '(shipped subset)'}: ${full.count} train images`,
    };
  }
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new Error(`--data: missing folder ${dir}`);
  }
  const cifar10 = withSub(dir, ['cifar-10-batches-bin'], 'data_batch_1.bin');
  const cifar100 = withSub(dir, ['cifar-100-binary'], 'train.bin');
  const stl = withSub(dir, ['stl10_binary'], 'train_X.bin');
  if (cifar10 || cifar100 || stl) {
    let kind: TrainData['kind'];
    let full: ImageSet;
    let test: ImageSet;
    if (cifar10) {
      kind = 'cifar10';
      full = loadCifar10({ dir: cifar10, split: 'train' });
      test = loadCifar10({ dir: cifar10, split: 'test' });
    } else if (cifar100) {
      kind = 'cifar100';
      full = loadCifar100({ dir: cifar100, split: 'train' });
      test = loadCifar100({ dir: cifar100, split: 'test' });
    } else {
      kind = 'stl10';
      full = loadStl10({ dir: stl!, split: 'train' });
      test = loadStl10({ dir: stl!, split: 'test' });
    }
    const stats = channelStats(full);
    return {
      kind,
      train: firstRows(full, opts.limit),
      evalTrain: full,
      test,
      ...stats,
      describe: `${kind} ${cifar10 ?? cifar100 ?? stl}: ${full.count} train, ${test.count} test images`,
    };
  }

  // A folder of images.
  const channels = opts.channels ?? 3;
  let skipped = 0;
  const read = async (root: string) => {
    const set = await loadImageFolder({ root, size: opts.imageSize, channels });
    skipped += set.skipped.length;
    return set;
  };
  const splitDir = (names: string[]) =>
    names.map((n) => join(dir, n)).find((d) => existsSync(d) && statSync(d).isDirectory());
  const trainDir = splitDir(['train']);
  const testDir = splitDir(['val', 'test']);
  let full: ImageSet;
  let test: ImageSet | null;
  let how: string;
  if (trainDir && testDir) {
    full = await read(trainDir);
    test = await read(testDir);
    how = `train/ and ${testDir.slice(dir.length + 1)}/`;
  } else {
    const all = await read(dir);
    if (all.classNames.length >= 2) {
      // A seeded 20% of each class held out, the rest trained on.
      const rng = new Rng(opts.seed ?? 0);
      const order = rng.permutation(all.count);
      const testRows: number[] = [];
      const trainRows: number[] = [];
      const seen = new Map<number, number>();
      const perClass = new Map<number, number>();
      for (let i = 0; i < all.count; i++) {
        perClass.set(all.labels[i]!, (perClass.get(all.labels[i]!) ?? 0) + 1);
      }
      for (const r of order) {
        const y = all.labels[r]!;
        const k = seen.get(y) ?? 0;
        seen.set(y, k + 1);
        (k < Math.round(0.2 * perClass.get(y)!) ? testRows : trainRows).push(r);
      }
      trainRows.sort((a, b) => a - b);
      testRows.sort((a, b) => a - b);
      full = subset(all, trainRows);
      test = subset(all, testRows);
      how = `${all.classNames.length} classes, 20% of each held out for testing`;
    } else {
      full = all;
      test = null;
      how = 'unlabelled: no evaluation';
    }
  }
  if (readdirSync(dir).length === 0) throw new Error(`--data ${dir}: empty folder`);
  return {
    kind: 'image-folder',
    train: firstRows(full, opts.limit),
    evalTrain: full,
    test,
    ...channelStats(full),
    describe:
      `image folder ${dir} (${how}): ${full.count} train${test ? `, ${test.count} test` : ''} ` +
      `images at ${opts.imageSize} px, ${skipped} unreadable files skipped`,
  };
}
