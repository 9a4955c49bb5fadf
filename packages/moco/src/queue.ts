/**
 * MoCo's queue of negatives (He et al., CVPR 2020, arXiv 1911.05722): a ring buffer of the
 * last K L2-normalised keys from the momentum encoder. Stored as `[dim, K]` so the logits
 * against it are one plain matMul `q [N, dim] x queue [dim, K]` (a transposed matMul is
 * about 10x slower on the wasm backend).
 */
import { Rng, tf } from '@disco/core';

/** The queue of negative keys and its write pointer. */
export class KeyQueue {
  /** Width of each key (the embedding width). */
  readonly dim: number;
  /** Number of keys held, K. */
  readonly size: number;
  /** `[dim, size]`, each column unit-norm. */
  readonly keys: tf.Variable;
  private pointer = 0;

  /** Starts as N(0, 1) columns, each L2-normalised, pointer 0 (as MoCo). */
  constructor(dim: number, size: number, rng: Rng) {
    if (!Number.isInteger(dim) || dim <= 0) {
      throw new Error(`KeyQueue: dim must be a positive integer, got ${dim}`);
    }
    if (!Number.isInteger(size) || size <= 0) {
      throw new Error(`KeyQueue: size (K) must be a positive integer, got ${size}`);
    }
    this.dim = dim;
    this.size = size;
    this.keys = tf.tidy(() => {
      const raw = tf.tensor2d(rng.normalArray(dim * size), [dim, size]);
      const norm = tf.maximum(tf.sqrt(tf.sum(tf.square(raw), 0, true)), 1e-12);
      return tf.variable(tf.div(raw, norm), false);
    });
  }

  /** The column the next `enqueue` writes first, in [0, K). */
  get ptr(): number {
    return this.pointer;
  }

  /**
   * Writes `keys [N, dim]` into columns [ptr, ptr + N) and advances ptr modulo K.
   * @throws when K is not a multiple of N (MoCo's requirement) or the width differs.
   */
  enqueue(keys: tf.Tensor2D): void {
    const [n, d] = keys.shape;
    if (d !== this.dim) {
      throw new Error(`KeyQueue.enqueue: keys have width ${d}, queue dim is ${this.dim}`);
    }
    if (this.size % n !== 0) {
      throw new Error(
        `KeyQueue.enqueue: queue size K = ${this.size} is not divisible by the batch size ${n}`,
      );
    }
    const p = this.pointer;
    tf.tidy(() => {
      const cols = tf.transpose(keys);
      const parts: tf.Tensor2D[] = [];
      if (p > 0) parts.push(tf.slice(this.keys, [0, 0], [this.dim, p]) as tf.Tensor2D);
      parts.push(cols);
      if (p + n < this.size) {
        parts.push(tf.slice(this.keys, [0, p + n], [this.dim, this.size - p - n]) as tf.Tensor2D);
      }
      this.keys.assign(parts.length === 1 ? parts[0]! : tf.concat(parts, 1));
    });
    this.pointer = (p + n) % this.size;
  }

  /** Restores contents and pointer (from a checkpoint or a teacher's queue). */
  load(keys: tf.Tensor, ptr: number): void {
    if (!tf.util.arraysEqual(keys.shape, this.keys.shape)) {
      throw new Error(`KeyQueue.load: shape [${keys.shape}] does not match [${this.keys.shape}]`);
    }
    if (!Number.isInteger(ptr) || ptr < 0 || ptr >= this.size) {
      throw new Error(`KeyQueue.load: pointer ${ptr} outside [0, ${this.size})`);
    }
    this.keys.assign(keys);
    this.pointer = ptr;
  }

  /** Frees the keys. */
  dispose(): void {
    this.keys.dispose();
  }
}
