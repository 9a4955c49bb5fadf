/**
 * Colour operations on a batch, each image with its own factor, in the sense of torchvision's
 * ColorJitter and RandomGrayscale (used by MoCo v2): brightness scales the pixels, contrast
 * blends each image with its mean gray level, saturation blends with the image's grayscale
 * version, hue rotates the HSV hue. Every result is clamped to [0, 1]. Input `[N, H, W, C]`
 * floats in [0, 1], C = 1 or 3; factors `[N, 1, 1, 1]`.
 */
import { tf } from '@disco/core';

/** ITU-R 601-2 luma weights, the ones torchvision's rgb_to_grayscale uses. */
const LUMA = [0.2989, 0.587, 0.114] as const;

/** Gray level `[N, H, W, 1]` of `[N, H, W, C]` (the input itself when C = 1). */
export function grayscale(x: tf.Tensor4D): tf.Tensor4D {
  if (x.shape[3] === 1) return x.clone();
  return tf.tidy(() => {
    const [r, g, b] = tf.split(x, 3, 3) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
    return tf.addN([r.mul(LUMA[0]), g.mul(LUMA[1]), b.mul(LUMA[2])]) as tf.Tensor4D;
  });
}

/** `clamp(f * x + (1 - f) * ref, 0, 1)`, the blend all three linear jitters share. */
function blend(x: tf.Tensor4D, ref: tf.Tensor | null, f: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const scaled = x.mul(f);
    const mixed = ref === null ? scaled : scaled.add(ref.mul(tf.sub(1, f)));
    return mixed.clipByValue(0, 1) as tf.Tensor4D;
  });
}

/** Brightness: `clamp(f * x)`. */
export function adjustBrightness(x: tf.Tensor4D, f: tf.Tensor4D): tf.Tensor4D {
  return blend(x, null, f);
}

/** Contrast: blend with each image's mean gray level `[N, 1, 1, 1]`. */
export function adjustContrast(x: tf.Tensor4D, f: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => blend(x, grayscale(x).mean([1, 2, 3], true), f));
}

/** Saturation: blend with the grayscale image (identity for C = 1). */
export function adjustSaturation(x: tf.Tensor4D, f: tf.Tensor4D): tf.Tensor4D {
  if (x.shape[3] === 1) return x.clone();
  return tf.tidy(() => blend(x, grayscale(x), f));
}

/** `v mod 6` into [0, 6), floored. */
function mod6(v: tf.Tensor): tf.Tensor {
  return v.sub(v.div(6).floor().mul(6));
}

/**
 * Hue: converts to HSV, adds `f` (in turns, |f| <= 0.5) to the hue, converts back. Identity
 * for C = 1.
 *
 * With hue h in sixths of a turn, value v = max(r, g, b) and chroma d = max - min, the
 * inverse conversion is, per channel n (5 for red, 3 for green, 1 for blue):
 * `v - d * clamp(min(k, 4 - k), 0, 1)` with `k = (n + h) mod 6`.
 */
export function adjustHue(x: tf.Tensor4D, f: tf.Tensor4D): tf.Tensor4D {
  if (x.shape[3] === 1) return x.clone();
  return tf.tidy(() => {
    const [r, g, b] = tf.split(x, 3, 3);
    const maxc = x.max(3, true);
    const chroma = maxc.sub(x.min(3, true));
    const hasHue = chroma.greater(0);
    const safe = tf.where(hasHue, chroma, tf.onesLike(chroma));

    // Hue in sixths of a turn; the channel holding the maximum picks the formula, red first.
    const fromR = mod6(g!.sub(b!).div(safe));
    const fromG = b!.sub(r!).div(safe).add(2);
    const fromB = r!.sub(g!).div(safe).add(4);
    const sixths = tf.where(maxc.equal(r!), fromR, tf.where(maxc.equal(g!), fromG, fromB));
    const hue = mod6(tf.where(hasHue, sixths, tf.zerosLike(sixths)).add(f.mul(6)));

    const channel = (n: number) => {
      const k = mod6(hue.add(n));
      const ramp = tf.minimum(k, tf.sub(4, k)).clipByValue(0, 1);
      return maxc.sub(chroma.mul(ramp));
    };
    return tf.concat([channel(5), channel(3), channel(1)], 3).clipByValue(0, 1) as tf.Tensor4D;
  });
}

/** The four jitter operations, indexed as in `JitterParams.order`. */
export const JITTER_OPS = [adjustBrightness, adjustContrast, adjustSaturation, adjustHue] as const;

/** The factor that makes each jitter operation the identity. */
export const JITTER_IDENTITY = [1, 1, 1, 0] as const;

/** Per-image colour jitter settings for a batch of `n` images. */
export interface JitterParams {
  /** `n * 4` factors: brightness, contrast, saturation, hue. */
  factors: Float32Array;
  /** `n * 4` operation indices (a permutation of 0..3 per image): the order of application. */
  order: Uint8Array;
  /** `n` flags: 0 leaves the image untouched. */
  apply: Uint8Array;
}

/**
 * Colour jitter with per-image factors and per-image order of the four operations, batched:
 * at each of the four steps the images are grouped by the operation they take next, each
 * group runs its operation once (so the costly hue conversion touches every image at most
 * once), and the groups are gathered back into one batch. Operations whose factor is the
 * identity, or that do nothing to 1-channel input (saturation, hue), are skipped.
 * @param x `[N, H, W, C]` in [0, 1].
 * @returns `[N, H, W, C]` in [0, 1].
 */
export function colorJitter(x: tf.Tensor4D, p: JitterParams): tf.Tensor4D {
  const n = x.shape[0];
  const gray = x.shape[3] === 1;
  return tf.tidy(() => {
    let current = x;
    // rowOf[i]: the row of `current` that holds image i.
    let rowOf = Int32Array.from({ length: n }, (_, i) => i);

    for (let step = 0; step < 4; step++) {
      const groups: number[][] = [[], [], [], []];
      const untouched: number[] = [];
      for (let i = 0; i < n; i++) {
        const op = p.order[i * 4 + step]!;
        const factor = p.factors[i * 4 + op]!;
        const noop = p.apply[i] === 0 || factor === JITTER_IDENTITY[op] || (gray && op >= 2);
        (noop ? untouched : groups[op]!).push(i);
      }
      if (untouched.length === n) continue;

      const images = [...groups.flat(), ...untouched];
      const gathered = tf.gather(current, Int32Array.from(images, (i) => rowOf[i]!));
      const sizes = [...groups.map((g) => g.length), untouched.length];
      const parts = tf.split(gathered, sizes.filter((s) => s > 0), 0) as tf.Tensor4D[];
      let part = 0;
      const outputs = sizes.map((size, op) => {
        if (size === 0) return null;
        const slice = parts[part++]!;
        if (op === 4) return slice;
        const members = groups[op]!;
        const f = tf.tensor4d(
          Float32Array.from(members, (i) => p.factors[i * 4 + op]!),
          [members.length, 1, 1, 1],
        );
        return JITTER_OPS[op]!(slice, f);
      });
      current = tf.concat(outputs.filter((t): t is tf.Tensor4D => t !== null), 0);
      rowOf = new Int32Array(n);
      images.forEach((image, row) => (rowOf[image] = row));
    }

    const identity = rowOf.every((row, i) => row === i);
    return identity ? current.clone() : tf.gather(current, rowOf);
  });
}

/**
 * Random grayscale: images with a nonzero flag become gray in all their channels.
 * @param x `[N, H, W, C]`; unchanged (copied) when C = 1.
 * @param flags `n` flags.
 */
export function randomGrayscale(x: tf.Tensor4D, flags: Uint8Array): tf.Tensor4D {
  if (x.shape[3] === 1 || flags.every((f) => f === 0)) return x.clone();
  return tf.tidy(() => {
    const mask = tf.tensor4d(Float32Array.from(flags, (f) => (f ? 1 : 0)), [flags.length, 1, 1, 1]);
    const gray = grayscale(x).tile([1, 1, 1, x.shape[3]]);
    // Exact for 0/1 masks: x * 1 + g * 0 and x * 0 + g * 1.
    return x.mul(tf.sub(1, mask)).add(gray.mul(mask)) as tf.Tensor4D;
  });
}
