/**
 * Batched colour jitter and random grayscale as MoCo v2 applies them (torchvision's
 * RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p=0.8) and RandomGrayscale(p=0.2)): every image
 * has its own factors and its own random order of the four operations, yet each step runs on
 * the whole batch at once.
 */
import { tf } from '@disco/core';

import { adjustHue, grayscale } from './color.js';

/** Per-image colour jitter settings for a batch of `n` images. */
export interface JitterParams {
  /** `n * 4` factors: brightness, contrast, saturation (1: identity), hue (0: identity). */
  factors: Float32Array;
  /** `n * 4` operation indices, a permutation of 0..3 per image: the order of application. */
  order: Uint8Array;
  /** `n` flags: 0 leaves the image untouched. */
  apply: Uint8Array;
}

/** The factor that makes each jitter operation (brightness, contrast, saturation, hue) a no-op. */
export const JITTER_IDENTITY = [1, 1, 1, 0] as const;

const column = (values: Float32Array) => tf.tensor4d(values, [values.length, 1, 1, 1]);

/**
 * One step of the three linear operations at once. Brightness, contrast and saturation all
 * are `clamp(f * x + (1 - f) * ref)` with ref 0, the image's mean gray or its grayscale
 * version; each image picks its ref through 0/1 masks, and images not taking a linear
 * operation at this step have f = 1, which leaves them exactly as they were.
 */
function linearStep(
  x: tf.Tensor4D,
  f: Float32Array,
  meanMask: Float32Array,
  grayMask: Float32Array,
): tf.Tensor4D {
  return tf.tidy(() => {
    const useMean = meanMask.some((m) => m !== 0);
    const useGray = grayMask.some((m) => m !== 0);
    const gray = useMean || useGray ? grayscale(x) : null;
    let ref: tf.Tensor | null = null;
    if (useMean) ref = tf.mul(tf.mean(gray!, [1, 2, 3], true), column(meanMask));
    if (useGray) {
      const part = tf.mul(gray!, column(grayMask));
      ref = ref === null ? part : tf.add(ref, part);
    }
    const factor = column(f);
    let out: tf.Tensor = tf.mul(x, factor);
    if (ref !== null) out = tf.add(out, tf.mul(ref, tf.sub(1, factor)));
    return tf.clipByValue(out, 0, 1) as tf.Tensor4D;
  });
}

/**
 * One step of hue on the images that take it now: gathered, converted, scattered back, so
 * the costly HSV round trip runs once per image over the four steps.
 */
function hueStep(x: tf.Tensor4D, images: number[], shifts: Float32Array): tf.Tensor4D {
  const n = x.shape[0];
  return tf.tidy(() => {
    if (images.length === n) return adjustHue(x, column(shifts));
    const rows = Int32Array.from(images);
    const shifted = adjustHue(tf.gather(x, rows), column(shifts));
    const scattered = tf.scatterND(tf.tensor2d(rows, [rows.length, 1], 'int32'), shifted, x.shape);
    const keep = new Float32Array(n).fill(1);
    for (const i of images) keep[i] = 0;
    // Exact for a 0/1 mask: x * 1 + 0 for kept images, x * 0 + shifted for the others.
    return tf.add(tf.mul(x, column(keep)), scattered) as tf.Tensor4D;
  });
}

/**
 * Colour jitter with per-image factors and a per-image order of the four operations. At each
 * of the four steps, the images whose next operation is linear (brightness, contrast,
 * saturation) take it in one batched blend, and those whose next operation is hue take it on
 * a gathered sub-batch. Operations with an identity factor, and saturation and hue on 1-channel
 * input (no-ops there, as in torchvision), are skipped.
 * @param x `[N, H, W, C]` in [0, 1], C = 1 or 3.
 * @returns `[N, H, W, C]` in [0, 1].
 */
export function colorJitter(x: tf.Tensor4D, p: JitterParams): tf.Tensor4D {
  const n = x.shape[0];
  const gray = x.shape[3] === 1;
  return tf.tidy(() => {
    let current = x;
    for (let step = 0; step < 4; step++) {
      const f = new Float32Array(n).fill(1);
      const meanMask = new Float32Array(n);
      const grayMask = new Float32Array(n);
      const hueImages: number[] = [];
      let linear = 0;
      for (let i = 0; i < n; i++) {
        const op = p.order[i * 4 + step]!;
        const factor = p.factors[i * 4 + op]!;
        if (p.apply[i] === 0 || factor === JITTER_IDENTITY[op] || (gray && op >= 2)) continue;
        if (op === 3) {
          hueImages.push(i);
          continue;
        }
        f[i] = factor;
        if (op === 1) meanMask[i] = 1;
        if (op === 2) grayMask[i] = 1;
        linear++;
      }
      if (linear > 0) current = linearStep(current, f, meanMask, grayMask);
      if (hueImages.length > 0) {
        const shifts = Float32Array.from(hueImages, (i) => p.factors[i * 4 + 3]!);
        current = hueStep(current, hueImages, shifts);
      }
    }
    return current === x ? x.clone() : current;
  });
}

/**
 * Random grayscale: images with a nonzero flag become gray in all their channels.
 * @param x `[N, H, W, C]`; unchanged (copied) when C = 1.
 * @param flags `N` flags.
 * @returns `[N, H, W, C]`.
 */
export function randomGrayscale(x: tf.Tensor4D, flags: Uint8Array): tf.Tensor4D {
  if (x.shape[3] === 1 || flags.every((f) => f === 0)) return x.clone();
  return tf.tidy(() => {
    const mask = column(Float32Array.from(flags, (f) => (f ? 1 : 0)));
    // [N, H, W, 1] broadcast over the channels. Exact for 0/1 masks: x * 1 + g * 0, x * 0 + g * 1.
    return tf.add(tf.mul(x, tf.sub(1, mask)), tf.mul(grayscale(x), mask)) as tf.Tensor4D;
  });
}
