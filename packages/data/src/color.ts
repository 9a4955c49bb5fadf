/**
 * Colour operations on a batch, each image with its own factor, in the sense of torchvision's
 * ColorJitter (used by MoCo v2): brightness scales the pixels, contrast
 * blends each image with its mean gray level, saturation blends with the image's grayscale
 * version, hue rotates the HSV hue. Every result is clamped to [0, 1]. Input `[N, H, W, C]`
 * floats in [0, 1], C = 1 or 3; factors `[N, 1, 1, 1]`. `jitter.ts` composes them per image.
 */
import { tf } from '@disco/core';

/** ITU-R 601-2 luma weights, the ones torchvision's rgb_to_grayscale uses. */
const LUMA = [0.2989, 0.587, 0.114] as const;

/**
 * Gray level `[N, H, W, 1]` of `[N, H, W, C]` (a copy of the input when C = 1). Computed as a
 * 1x1 convolution, which every backend runs fast, rather than by splitting the channels.
 */
export function grayscale(x: tf.Tensor4D): tf.Tensor4D {
  if (x.shape[3] === 1) return x.clone();
  return tf.tidy(() => tf.conv2d(x, tf.tensor4d([...LUMA], [1, 1, 3, 1]), 1, 'valid'));
}

/** `clamp(f * x + (1 - f) * ref, 0, 1)`, the blend all three linear jitters share. */
function blend(x: tf.Tensor4D, ref: tf.Tensor | null, f: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const scaled = tf.mul(x, f);
    const mixed = ref === null ? scaled : tf.add(scaled, tf.mul(ref, tf.sub(1, f)));
    return tf.clipByValue(mixed, 0, 1) as tf.Tensor4D;
  });
}

/** Brightness: `clamp(f * x)`. */
export function adjustBrightness(x: tf.Tensor4D, f: tf.Tensor4D): tf.Tensor4D {
  return blend(x, null, f);
}

/** Contrast: blend with each image's mean gray level `[N, 1, 1, 1]`. */
export function adjustContrast(x: tf.Tensor4D, f: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => blend(x, tf.mean(grayscale(x), [1, 2, 3], true), f));
}

/** Saturation: blend with the grayscale image (identity for C = 1). */
export function adjustSaturation(x: tf.Tensor4D, f: tf.Tensor4D): tf.Tensor4D {
  if (x.shape[3] === 1) return x.clone();
  return tf.tidy(() => blend(x, grayscale(x), f));
}

/** `v mod 6` into [0, 6), floored. */
function mod6(v: tf.Tensor): tf.Tensor {
  return tf.sub(v, tf.mul(tf.floor(tf.div(v, 6)), 6));
}

/**
 * `[g - b, b - r, r - g]` as a 1x1 convolution: the numerators of the hue formula when the
 * maximum is red, green or blue respectively.
 */
const HUE_DIFFERENCES = [0, -1, 1, 1, 0, -1, -1, 1, 0];

/**
 * Hue: converts to HSV, adds `f` (in turns, |f| <= 0.5) to the hue, converts back. Identity
 * for C = 1.
 *
 * With value v = max(r, g, b) and chroma d = max - min, the hue in sixths of a turn is
 * `(g - b) / d`, `(b - r) / d + 2` or `(r - g) / d + 4` for a maximum in red, green or blue
 * (where two channels tie for the maximum both formulas agree, modulo 6). The inverse is, per
 * channel n (5 for red, 3 for green, 1 for blue), `v - d * clamp(min(k, 4 - k), 0, 1)` with
 * `k = (n + hue) mod 6`. Everything runs on whole `[N, H, W, 3]` tensors, with no channel split.
 */
export function adjustHue(x: tf.Tensor4D, f: tf.Tensor4D): tf.Tensor4D {
  if (x.shape[3] === 1) return x.clone();
  return tf.tidy(() => {
    const maxc = tf.max(x, 3, true);
    const chroma = tf.sub(maxc, tf.min(x, 3, true));
    // Where chroma is 0 every difference is 0 too, so any nonzero divisor gives hue 0.
    const divisor = tf.maximum(chroma, 1e-12);
    const differences = tf.conv2d(x, tf.tensor4d(HUE_DIFFERENCES, [1, 1, 3, 3]), 1, 'valid');
    const candidates = tf.add(tf.div(differences, divisor), tf.tensor1d([0, 2, 4]));
    const pick = tf.cast(tf.oneHot(tf.argMax(x, 3) as tf.Tensor3D, 3), 'float32');
    const sixths = tf.sum(tf.mul(candidates, pick), 3, true);
    const hue = tf.add(sixths, tf.mul(f, 6));

    const k = mod6(tf.add(hue, tf.tensor1d([5, 3, 1])));
    const ramp = tf.clipByValue(tf.minimum(k, tf.sub(4, k)), 0, 1);
    return tf.clipByValue(tf.sub(maxc, tf.mul(chroma, ramp)), 0, 1) as tf.Tensor4D;
  });
}
