/**
 * Precise BatchNorm: re-estimates every BN layer's running statistics as the plain average
 * of the batch statistics over a pass of training images, with the weights fixed. Short
 * runs need it: with torchvision's MobileNetV3 momentum of 0.01, running statistics lag
 * hundreds of steps behind weights that move quickly, and eval-mode features then carry a
 * large offset shared by all images (cosine similarities all near 1).
 */
import { type Encoder, tf } from '@disco/core';
import { type ImageSet, toFloatTensor } from '@disco/data';

export interface PreciseBnOptions {
  /** Images used (the first ones of the set). Default 2048. */
  images?: number;
  batchSize?: number;
  /** Ghost-BN group size of training, so the statistics match what training saw. */
  bnGroupSize?: number;
  preprocess: (x: tf.Tensor4D) => tf.Tensor4D;
}

/** Recomputes the running statistics of `encoder`'s BN layers on `set`, in place. */
export function preciseBatchNorm(encoder: Encoder, set: ImageSet, opts: PreciseBnOptions): void {
  const total = Math.min(opts.images ?? 2048, set.count);
  // Whole ghost-BN groups per batch, so every batch normalises as training did.
  const group = opts.bnGroupSize ?? 1;
  const batchSize = Math.max(
    group,
    Math.floor(Math.min(opts.batchSize ?? 256, total) / group) * group,
  );
  const pixels = set.height * set.width * set.channels;
  let pass = 0;
  for (let start = 0; start + batchSize <= total; start += batchSize) {
    tf.tidy(() => {
      const x = toFloatTensor(
        set.images.subarray(start * pixels, (start + batchSize) * pixels),
        batchSize,
        set.height,
        set.width,
        set.channels,
      );
      encoder.apply(opts.preprocess(x), {
        training: true,
        bnGroupSize: opts.bnGroupSize,
        bnMomentum: 1 / (pass + 1),
      });
    });
    pass++;
  }
}
