/**
 * Gaussian blur of a batch, each image with its own sigma (the MoCo v2 / SimCLR blur), run as
 * depthwise convolutions with the batch folded into the channels: `[N, H, W, C]` becomes
 * `[1, H, W, N*C]`, so one kernel call filters every image with its own kernel. The Gaussian is
 * separable, so it runs as a horizontal `[1, k]` pass then a vertical `[k, 1]` pass (2k
 * multiplies per pixel instead of k^2), over a reflect-padded image as torchvision pads.
 */
import { tf } from '@disco/core';

/** Kernel radius for a sigma: `ceil(3 sigma)`, capped so reflect padding fits in the image. */
export function blurRadius(sigma: number, height: number, width: number): number {
  if (!(sigma > 0)) return 0;
  return Math.min(Math.ceil(3 * sigma), height - 1, width - 1);
}

/**
 * Normalised 1-D Gaussian taps `exp(-d^2 / (2 sigma^2))` for d in -radius..radius, centred in
 * a row of `2 * maxRadius + 1` (zeros outside); sigma 0 gives the identity tap.
 */
export function gaussianTaps(sigma: number, radius: number, maxRadius: number): Float32Array {
  const taps = new Float32Array(2 * maxRadius + 1);
  if (radius === 0) {
    taps[maxRadius] = 1;
    return taps;
  }
  let sum = 0;
  for (let d = -radius; d <= radius; d++) sum += Math.exp((-d * d) / (2 * sigma * sigma));
  for (let d = -radius; d <= radius; d++) {
    taps[maxRadius + d] = Math.exp((-d * d) / (2 * sigma * sigma)) / sum;
  }
  return taps;
}

/**
 * Blurs each image with its own sigma.
 * @param x `[N, H, W, C]`.
 * @param sigmas `N` standard deviations in pixels; 0 leaves that image as it is.
 * @returns `[N, H, W, C]`.
 */
export function gaussianBlurBatch(x: tf.Tensor4D, sigmas: Float32Array): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  if (sigmas.length !== n) {
    throw new Error(`gaussianBlurBatch: need one sigma per image (${n}), got ${sigmas.length}`);
  }
  const radii = Array.from(sigmas, (s) => blurRadius(s, h, w));
  const maxRadius = Math.max(0, ...radii);
  if (maxRadius === 0) return x.clone();

  // Taps for channel i*C + j are image i's: [k, N*C], image-major like the folded channels.
  const k = 2 * maxRadius + 1;
  const taps = new Float32Array(k * n * c);
  for (let i = 0; i < n; i++) {
    const row = gaussianTaps(sigmas[i]!, radii[i]!, maxRadius);
    for (let t = 0; t < k; t++) taps.fill(row[t]!, t * n * c + i * c, t * n * c + (i + 1) * c);
  }

  return tf.tidy(() => {
    // [N, H, W, C] -> [H, W, N, C] -> [1, H, W, N*C]
    const folded = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, n * c]) as tf.Tensor4D;
    const padded = tf.mirrorPad(
      folded,
      [
        [0, 0],
        [maxRadius, maxRadius],
        [maxRadius, maxRadius],
        [0, 0],
      ],
      'reflect',
    );
    const horizontal = tf.tensor4d(taps, [1, k, n * c, 1]);
    const vertical = tf.tensor4d(taps, [k, 1, n * c, 1]);
    const rows = tf.depthwiseConv2d(padded, horizontal, 1, 'valid');
    const blurred = tf.depthwiseConv2d(rows, vertical, 1, 'valid');
    return tf.transpose(tf.reshape(blurred, [h, w, n, c]), [2, 0, 1, 3]) as tf.Tensor4D;
  });
}
