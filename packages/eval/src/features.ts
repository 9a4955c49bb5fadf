/**
 * Feature extraction for frozen-feature evaluation: an encoder in eval mode (BatchNorm on
 * running statistics, nothing updated) over a uint8 image set, in batches, into one
 * row-major Float32Array that kNN and the linear probe read.
 */
import { tf, type Encoder } from '@disco/core';
import { checkInt } from './validate.js';

/** The layout of the images `extractFeatures` reads and how it batches them. */
export interface ExtractOptions {
  /** Number of images in `images`. */
  count: number;
  /** Rows of every image. */
  height: number;
  /** Columns of every image. */
  width: number;
  /** Channels of every image. */
  channels: number;
  /** Images per forward pass (default 256). */
  batchSize?: number;
  /**
   * Runs on each batch after scaling to [0, 1], before the encoder: normalisation, a
   * resize. `[b, height, width, channels] -> [b, h', w', c']`; tensors it makes are freed.
   * Default: none.
   */
  preprocess?: (x: tf.Tensor4D) => tf.Tensor4D;
  /** Called after each batch with the images done so far and `count`. */
  onProgress?: (done: number, count: number) => void;
}

/**
 * Embeds every image with `encoder` in eval mode (`{ training: false }`).
 * @param encoder maps `[b, h, w, c]` float32 images to `[b, encoder.outDim]`
 * @param images uint8 pixels, NHWC `[count, height, width, channels]`, row-major
 * @returns features `[count, encoder.outDim]`, row-major, as a plain Float32Array (no tensor
 *   to free; pass it with `dim: encoder.outDim` or its labels to `knnClassify` and
 *   `linearProbe`). No tensor outlives the call.
 * @throws when `images` does not hold `count` images of the given size, a size is not a
 *   positive integer, or the encoder's output is not `[b, encoder.outDim]`
 */
export async function extractFeatures(
  encoder: Encoder,
  images: Uint8Array,
  opts: ExtractOptions,
): Promise<Float32Array> {
  const fn = 'extractFeatures';
  const { count, height, width, channels } = opts;
  const batchSize = opts.batchSize ?? 256;
  checkInt(fn, 'count', count, 0);
  checkInt(fn, 'height', height, 1);
  checkInt(fn, 'width', width, 1);
  checkInt(fn, 'channels', channels, 1);
  checkInt(fn, 'batchSize', batchSize, 1);
  const pixels = height * width * channels;
  if (images.length !== count * pixels) {
    throw new Error(
      `${fn}: images must hold count x height x width x channels = ${count} x ${height} x ` +
        `${width} x ${channels} = ${count * pixels} bytes, got ${images.length}`,
    );
  }
  const dim = encoder.outDim;
  const out = new Float32Array(count * dim);

  for (let start = 0; start < count; start += batchSize) {
    const b = Math.min(batchSize, count - start);
    const y = tf.tidy(() => {
      // uint8 [b, h, w, c] -> float32 in [0, 1] -> preprocess -> [b, dim].
      const bytes = images.subarray(start * pixels, (start + b) * pixels);
      const x = tf.div(tf.tensor4d(bytes, [b, height, width, channels], 'float32'), 255);
      const input = opts.preprocess ? opts.preprocess(x as tf.Tensor4D) : (x as tf.Tensor4D);
      return encoder.apply(input, { training: false });
    });
    try {
      if (y.rank !== 2 || y.shape[0] !== b || y.shape[1] !== dim) {
        throw new Error(
          `${fn}: the encoder returned [${y.shape}] for a batch of ${b}, expected [${b}, ${dim}] ` +
            '(encoder.outDim)',
        );
      }
      out.set(await y.data(), start * dim);
    } finally {
      y.dispose();
    }
    opts.onProgress?.(start + b, count);
  }
  return out;
}
