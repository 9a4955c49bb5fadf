/**
 * A shuffling batch loader over an in-memory uint8 image set. Each epoch's order is a
 * permutation drawn from a stream derived from the loader's seed stream and the epoch number
 * alone, never from how far a stream has run, so a run resumed at (epoch, batch) sees exactly
 * the batches an unbroken run would have seen.
 */
import { Rng, tf } from '@disco/core';

import { checkImageSet, type ImageSet } from './image-set.js';

/** The batch size, order and seed of a {@link BatchLoader}. */
export interface BatchLoaderConfig {
  /** Images per batch. */
  batchSize: number;
  /** Draw a fresh order every epoch (default true); false keeps the stored order. */
  shuffle?: boolean;
  /**
   * Skip the last batch of an epoch when it is short (default false, as PyTorch's
   * DataLoader; MoCo training sets it true so every step has a full batch).
   */
  dropLast?: boolean;
  /**
   * The seed of the epoch orders: an `Rng` (forked once at construction, never advanced, so
   * the caller's stream is left as it was) or a number. Required when `shuffle` is true.
   * To resume a run, build the loader from the same seed or an `Rng` in the same state.
   */
  rng?: Rng | number;
}

/** One batch of a `BatchLoader`. */
export interface Batch {
  /** `size * height * width * channels` pixels, NHWC, 0..255 (a copy; a view when unshuffled). */
  images: Uint8Array;
  /** `size` labels. */
  labels: Uint8Array;
  /** `size` indices into the image set: which images this batch holds. */
  indices: Int32Array;
  /** Images in this batch: `batchSize`, or fewer for a last short batch. */
  size: number;
  /** The epoch this batch belongs to, 0-based. */
  epoch: number;
  /** Position in the epoch, 0-based. */
  batchIndex: number;
}

/** Shuffling, resumable batches over an `ImageSet`. */
export class BatchLoader {
  /** Images per batch. */
  readonly batchSize: number;
  /** Whether each epoch draws a fresh order. */
  readonly shuffle: boolean;
  /** Whether a short last batch is skipped. */
  readonly dropLast: boolean;
  private readonly stream: Rng | null;
  private cached: { epoch: number; order: Int32Array } | null = null;

  /**
   * @throws when the image set is inconsistent, `batchSize` is not a positive integer, or
   *   `shuffle` is on without an `rng`.
   */
  constructor(
    /** The image set batched (not copied). */
    readonly data: ImageSet,
    cfg: BatchLoaderConfig,
  ) {
    checkImageSet(data, 'BatchLoader');
    if (!(Number.isInteger(cfg.batchSize) && cfg.batchSize > 0)) {
      throw new Error(`BatchLoader: batchSize must be a positive integer, got ${cfg.batchSize}`);
    }
    this.batchSize = cfg.batchSize;
    this.shuffle = cfg.shuffle ?? true;
    this.dropLast = cfg.dropLast ?? false;
    if (this.shuffle && cfg.rng === undefined) {
      throw new Error('BatchLoader: shuffle is on, so rng (an Rng or a seed number) is required');
    }
    if (this.dropLast && this.batchSize > data.count) {
      throw new Error(
        `BatchLoader: with dropLast, batchSize (${this.batchSize}) must not exceed ` +
          `the image count (${data.count}), or an epoch has no batch`,
      );
    }
    const rng = typeof cfg.rng === 'number' ? new Rng(cfg.rng) : cfg.rng;
    this.stream = rng === undefined ? null : rng.fork('BatchLoader');
  }

  /** Batches in one epoch. */
  get batchesPerEpoch(): number {
    const n = this.data.count / this.batchSize;
    return this.dropLast ? Math.floor(n) : Math.ceil(n);
  }

  /**
   * The order of the image set in an epoch: a permutation of 0..count-1, depending only on
   * the seed and `epoch` (the identity when unshuffled).
   */
  order(epoch: number): Int32Array {
    checkIndex(epoch, Infinity, 'epoch');
    if (this.cached?.epoch === epoch) return this.cached.order;
    let order: Int32Array;
    if (this.stream === null || !this.shuffle) {
      order = new Int32Array(this.data.count);
      for (let i = 0; i < order.length; i++) order[i] = i;
    } else {
      order = this.stream.fork(`epoch ${epoch}`).permutation(this.data.count);
    }
    this.cached = { epoch, order };
    return order;
  }

  /**
   * One batch of an epoch.
   * @throws when `epoch` is not a non-negative integer or `batchIndex` is past the epoch.
   */
  batch(epoch: number, batchIndex: number): Batch {
    checkIndex(batchIndex, this.batchesPerEpoch, 'batchIndex');
    const order = this.order(epoch);
    const start = batchIndex * this.batchSize;
    const indices = order.slice(start, Math.min(start + this.batchSize, order.length));
    const size = indices.length;
    const { height, width, channels } = this.data;
    const pixels = height * width * channels;

    if (!this.shuffle) {
      return {
        images: this.data.images.subarray(start * pixels, (start + size) * pixels),
        labels: this.data.labels.subarray(start, start + size),
        indices,
        size,
        epoch,
        batchIndex,
      };
    }
    const images = new Uint8Array(size * pixels);
    const labels = new Uint8Array(size);
    for (let k = 0; k < size; k++) {
      const src = indices[k]!;
      images.set(this.data.images.subarray(src * pixels, (src + 1) * pixels), k * pixels);
      labels[k] = this.data.labels[src]!;
    }
    return { images, labels, indices, size, epoch, batchIndex };
  }

  /**
   * The batches of one epoch, in order, from `startBatch` on (to resume mid-epoch).
   * @throws when `epoch` or `startBatch` is out of range.
   */
  *epoch(epoch: number, startBatch = 0): Generator<Batch, void, undefined> {
    checkIndex(startBatch, this.batchesPerEpoch + 1, 'startBatch');
    for (let b = startBatch; b < this.batchesPerEpoch; b++) yield this.batch(epoch, b);
  }
}

function checkIndex(value: number, limit: number, name: string): void {
  if (!(Number.isInteger(value) && value >= 0 && value < limit)) {
    const range = limit === Infinity ? 'a non-negative integer' : `an integer in [0, ${limit})`;
    throw new Error(`BatchLoader: ${name} must be ${range}, got ${value}`);
  }
}

/**
 * Converts uint8 NHWC pixels to a float tensor in [0, 1] (pixel / 255, as torchvision's
 * ToTensor).
 * @param images `n * h * w * c` bytes, NHWC.
 * @returns a `[n, h, w, c]` float32 tensor.
 * @throws when the length is not `n * h * w * c` or a size is not a positive integer.
 */
export function toFloatTensor(
  images: Uint8Array,
  n: number,
  h: number,
  w: number,
  c: number,
): tf.Tensor4D {
  for (const [name, v] of [
    ['n', n],
    ['h', h],
    ['w', w],
    ['c', c],
  ] as const) {
    if (!(Number.isInteger(v) && v > 0)) {
      throw new Error(`toFloatTensor: ${name} must be a positive integer, got ${v}`);
    }
  }
  if (images.length !== n * h * w * c) {
    throw new Error(
      `toFloatTensor: images must hold n*h*w*c = ${n * h * w * c} bytes, got ${images.length}`,
    );
  }
  const values = new Float32Array(images.length);
  for (let i = 0; i < images.length; i++) values[i] = images[i]! / 255;
  return tf.tensor4d(values, [n, h, w, c], 'float32');
}
