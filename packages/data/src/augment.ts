/**
 * The MoCo v2 augmentations (Chen, Fan, Girshick and He 2020, "Improved Baselines with
 * Momentum Contrastive Learning", https://arxiv.org/abs/2003.04297), run batched on the tfjs
 * backend. Per image, in this order: random resized crop to a square, horizontal flip (folded
 * into the crop box; it commutes with everything after it), colour jitter with probability
 * 0.8, random grayscale with probability 0.2, Gaussian blur with probability 0.5, then
 * normalisation. All random choices are drawn in JS from an `Rng`, image by image, so a fixed
 * seed gives the same views on every backend. Calling `mocoV2Augment` twice gives the two views.
 *
 * Differences from torchvision's pipeline, all deliberate:
 * - Resizing is bilinear without antialiasing, sampling the crop window from the centre of its
 *   first pixel to the centre of its last (align-corners); torchvision uses half-pixel centres
 *   and antialiases when it downsamples.
 * - The blur is an exact Gaussian truncated at ceil(3 sigma), with reflect padding; the paper's
 *   code uses PIL's GaussianBlur(radius = sigma). Sigma is drawn from `blurSigma` (paper: 0.1 to
 *   2.0, for 224-pixel crops) and scaled by `size / blurReferenceSize`, so a 32-pixel crop gets
 *   the same blur relative to its size as a 224-pixel one.
 * - Colour jitter applies its four operations in a random order per image, as torchvision does.
 */
import { tf, type Rng } from '@disco/core';

import { gaussianBlurBatch } from './blur.js';
import { colorJitter, randomGrayscale, type JitterParams } from './jitter.js';
import { cropBoxes, sampleResizedCrop, type CropWindow } from './crop.js';

/** ImageNet per-channel mean (RGB), the normalisation of the paper. */
export const IMAGENET_MEAN: readonly number[] = [0.485, 0.456, 0.406];
/** ImageNet per-channel standard deviation (RGB). */
export const IMAGENET_STD: readonly number[] = [0.229, 0.224, 0.225];

/** Every parameter of the MoCo v2 augmentation. */
export interface AugmentConfig {
  /** Output side in pixels (square). Unset: the input's height. The paper: 224. */
  size?: number;
  /** Random resized crop: share of the image area, `[lo, hi]`. Paper: `[0.2, 1]`. */
  scale: readonly [number, number];
  /** Random resized crop: aspect ratio (width / height), `[lo, hi]`. Paper: `[3/4, 4/3]`. */
  ratio: readonly [number, number];
  /** Probability of a horizontal flip. Paper: 0.5. */
  flipP: number;
  /** Probability of colour jitter. Paper: 0.8. */
  jitterP: number;
  /** Brightness strength b: factor `U[max(0, 1 - b), 1 + b]`. Paper: 0.4. */
  brightness: number;
  /** Contrast strength: factor as brightness, around each image's mean gray. Paper: 0.4. */
  contrast: number;
  /** Saturation strength (3-channel input only). Paper: 0.4. */
  saturation: number;
  /** Hue strength h in turns, shift `U[-h, h]`, at most 0.5 (3-channel input only). Paper: 0.1. */
  hue: number;
  /** Probability of grayscale (3-channel input only). Paper: 0.2. */
  grayscaleP: number;
  /** Probability of Gaussian blur. Paper: 0.5. */
  blurP: number;
  /** Blur sigma range `[lo, hi]` in pixels at `blurReferenceSize`. Paper: `[0.1, 2]`. */
  blurSigma: readonly [number, number];
  /** The output size `blurSigma` is meant for; sigma is scaled by `size / this`. Paper: 224. */
  blurReferenceSize: number;
  /** Normalisation mean, one value per channel or one for all. Paper: ImageNet's. */
  mean: readonly number[];
  /** Normalisation standard deviation, one per channel or one for all. Paper: ImageNet's. */
  std: readonly number[];
}

/** The paper's settings (output size: the input's). */
export const MOCO_V2_AUGMENT: Readonly<AugmentConfig> = Object.freeze<AugmentConfig>({
  scale: [0.2, 1.0],
  ratio: [3 / 4, 4 / 3],
  flipP: 0.5,
  jitterP: 0.8,
  brightness: 0.4,
  contrast: 0.4,
  saturation: 0.4,
  hue: 0.1,
  grayscaleP: 0.2,
  blurP: 0.5,
  blurSigma: [0.1, 2.0],
  blurReferenceSize: 224,
  mean: IMAGENET_MEAN,
  std: IMAGENET_STD,
});

/** The random choices for one batch, one entry per image. */
export interface AugmentParams {
  /** `n` random resized crop windows, in source pixels. */
  windows: CropWindow[];
  /** `n` flags: mirror left-right. */
  flip: Uint8Array;
  /** The colour jitter of each image (factors, order, whether it applies). */
  jitter: JitterParams;
  /** `n` flags: convert to grayscale. */
  grayscale: Uint8Array;
  /** `n` blur sigmas in output pixels; 0: no blur. */
  sigma: Float32Array;
}

function fail(rule: string, value: unknown): never {
  throw new Error(`mocoV2Augment: ${rule}, got ${JSON.stringify(value)}`);
}

function checkRange(name: string, r: readonly number[], lo: number, hi = Infinity): void {
  if (!(r.length === 2 && r[0]! >= lo && r[0]! <= r[1]! && r[1]! <= hi)) {
    fail(`${name} must be [lo, hi] with ${lo} <= lo <= hi <= ${hi}`, r);
  }
}

/**
 * Merges options onto the paper's settings and checks them against the input.
 * @throws when a setting is out of range or mean/std do not match the channel count.
 */
export function resolveAugmentConfig(
  opts: Partial<AugmentConfig>,
  inputHeight: number,
  channels: number,
): Required<AugmentConfig> {
  const cfg = { ...MOCO_V2_AUGMENT, size: inputHeight, ...opts };
  if (!(Number.isInteger(cfg.size) && cfg.size > 0))
    fail('size must be a positive integer', cfg.size);
  checkRange('scale', cfg.scale, Number.MIN_VALUE);
  checkRange('ratio', cfg.ratio, Number.MIN_VALUE);
  checkRange('blurSigma', cfg.blurSigma, Number.MIN_VALUE);
  for (const key of ['flipP', 'jitterP', 'grayscaleP', 'blurP'] as const) {
    if (!(cfg[key] >= 0 && cfg[key] <= 1)) fail(`${key} must be a probability in [0, 1]`, cfg[key]);
  }
  for (const key of ['brightness', 'contrast', 'saturation'] as const) {
    if (!(cfg[key] >= 0)) fail(`${key} must be >= 0`, cfg[key]);
  }
  if (!(cfg.hue >= 0 && cfg.hue <= 0.5)) fail('hue must be in [0, 0.5]', cfg.hue);
  if (!(cfg.blurReferenceSize > 0)) fail('blurReferenceSize must be > 0', cfg.blurReferenceSize);
  for (const key of ['mean', 'std'] as const) {
    const v = cfg[key];
    if (v.length !== 1 && v.length !== channels) {
      fail(
        `${key} must hold 1 or ${channels} values for ${channels}-channel input ` +
          `(for Fashion-MNIST pass FASHION_MNIST_MEAN / FASHION_MNIST_STD)`,
        v,
      );
    }
  }
  if (!cfg.std.every((s) => s > 0)) fail('std values must be > 0', cfg.std);
  return cfg as Required<AugmentConfig>;
}

/**
 * Draws the random choices for `n` images, image by image: crop window, flip, jitter (apply,
 * factors, order), grayscale, blur (apply, sigma).
 */
export function sampleAugmentParams(
  rng: Rng,
  n: number,
  height: number,
  width: number,
  cfg: Required<AugmentConfig>,
): AugmentParams {
  const windows: CropWindow[] = [];
  const flip = new Uint8Array(n);
  const jitter: JitterParams = {
    factors: new Float32Array(n * 4),
    order: new Uint8Array(n * 4),
    apply: new Uint8Array(n),
  };
  const grayscale = new Uint8Array(n);
  const sigma = new Float32Array(n);
  const sigmaScale = cfg.size / cfg.blurReferenceSize;
  const strengths = [cfg.brightness, cfg.contrast, cfg.saturation];

  for (let i = 0; i < n; i++) {
    windows.push(sampleResizedCrop(rng, height, width, cfg.scale, cfg.ratio));
    flip[i] = rng.uniform() < cfg.flipP ? 1 : 0;

    jitter.apply[i] = rng.uniform() < cfg.jitterP ? 1 : 0;
    strengths.forEach(
      (s, op) => (jitter.factors[i * 4 + op] = rng.range(Math.max(0, 1 - s), 1 + s)),
    );
    jitter.factors[i * 4 + 3] = rng.range(-cfg.hue, cfg.hue);
    jitter.order.set(rng.permutation(4), i * 4);

    grayscale[i] = rng.uniform() < cfg.grayscaleP ? 1 : 0;
    const blur = rng.uniform() < cfg.blurP;
    const s = rng.range(cfg.blurSigma[0], cfg.blurSigma[1]) * sigmaScale;
    sigma[i] = blur ? s : 0;
  }
  return { windows, flip, jitter, grayscale, sigma };
}

/**
 * Applies drawn choices to a batch: one cropAndResize (with flips), colour jitter, grayscale,
 * blur, normalisation.
 * @param x `[N, H, W, C]` floats in [0, 1].
 * @returns `[N, size, size, C]`, normalised.
 */
export function applyAugment(
  x: tf.Tensor4D,
  params: AugmentParams,
  cfg: Required<AugmentConfig>,
): tf.Tensor4D {
  const [n, height, width, channels] = x.shape;
  return tf.tidy(() => {
    const boxes = tf.tensor2d(cropBoxes(params.windows, height, width, params.flip), [n, 4]);
    const boxIndex = tf.range(0, n, 1, 'int32') as tf.Tensor1D;
    const cropped = tf.image.cropAndResize(x, boxes, boxIndex, [cfg.size, cfg.size], 'bilinear');

    const jittered = colorJitter(cropped, params.jitter);
    const grayed = randomGrayscale(jittered, params.grayscale);
    const blurred = gaussianBlurBatch(grayed, params.sigma);

    const mean = tf.tensor1d(expand(cfg.mean, channels));
    const std = tf.tensor1d(expand(cfg.std, channels));
    return tf.div(tf.sub(blurred, mean), std) as tf.Tensor4D;
  });
}

function expand(v: readonly number[], channels: number): number[] {
  return v.length === channels ? [...v] : new Array<number>(channels).fill(v[0]!);
}

/**
 * One MoCo v2 view of a batch: draws each image's random choices from `rng`, then runs the
 * augmentation on the backend inside one `tf.tidy` (nothing leaks; the input is kept).
 * @param x `[N, H, W, C]` float32 in [0, 1], C = 1 or 3.
 * @param rng the stream of the views; two calls give the two views.
 * @param opts overrides of `MOCO_V2_AUGMENT`.
 * @returns `[N, size, size, C]` float32, normalised with `mean` / `std`.
 * @throws when `x` is not rank 4 float32 with 1 or 3 channels, or a setting is invalid.
 */
export function mocoV2Augment(
  x: tf.Tensor4D,
  rng: Rng,
  opts: Partial<AugmentConfig> = {},
): tf.Tensor4D {
  if (x.rank !== 4 || x.dtype !== 'float32' || (x.shape[3] !== 1 && x.shape[3] !== 3)) {
    fail('x must be a float32 [N, H, W, C] tensor with C = 1 or 3', {
      shape: x.shape,
      dtype: x.dtype,
    });
  }
  const [n, height, width, channels] = x.shape;
  const cfg = resolveAugmentConfig(opts, height, channels);
  const params = sampleAugmentParams(rng, n, height, width, cfg);
  return applyAugment(x, params, cfg);
}
