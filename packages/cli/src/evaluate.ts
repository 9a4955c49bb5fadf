/**
 * Frozen-feature evaluation of a backbone on an image set: weighted kNN (k 200, t 0.1) and
 * a linear probe, both top-1 on the test split, features from eval-mode BatchNorm. Every
 * model is evaluated the same way: first its BN running statistics are re-estimated on
 * training images (precise BN, in place), so a briefly trained model, whose running
 * statistics lag its weights, and a random one, whose buffers are still 0 and 1, are
 * measured as the networks they are.
 */
import { type Encoder, tf } from '@disco/core';
import type { ImageSet } from '@disco/data';
import { extractFeatures, knnClassify, linearProbe } from '@disco/eval';
import { Rng } from '@disco/core';
import { preciseBatchNorm } from './precise-bn.js';

/** How `evaluateBackbone` prepares the images and scores the features. */
export interface EvalOptions {
  /** Side, in pixels, the images are resized to (bilinear) before the backbone sees them. */
  imageSize: number;
  /** Per-channel mean subtracted from pixels in [0, 1]; one value is used for every channel. */
  mean: readonly number[];
  /** Per-channel standard deviation divided by; one value is used for every channel. */
  std: readonly number[];
  /** Neighbours of the weighted kNN classifier (default 200). */
  k?: number;
  /** Temperature of the kNN vote weights (default 0.1). */
  t?: number;
  /** Linear-probe epochs (default 100); 0 skips the probe (linearTop1 is then NaN). */
  linearEpochs?: number;
  /** Seed of the linear probe's initialisation and shuffling (default 0). */
  seed?: number;
  /** Precise BN before extracting features (default on, ghost groups of 32); false: off. */
  preciseBn?:
    | false
    | {
        /** Ghost-BN group size of training, so the statistics match it (default 32). */
        bnGroupSize?: number;
        /** Training images averaged over, the first ones of the set (default 2048). */
        images?: number;
      };
}

/** The scores of one evaluation. */
export interface EvalResult {
  /** Weighted kNN top-1 accuracy on the test split, a fraction in [0, 1]. */
  knnTop1: number;
  /** Linear-probe top-1 accuracy on the test split, in [0, 1]; NaN when the probe is skipped. */
  linearTop1: number;
  /** Width of the backbone's feature vector (its `outDim`). */
  featureDim: number;
}

/** Resizes `[N, H, W, C]` images in [0, 1] to `size` and normalises them. */
export function preprocessFor(opts: {
  imageSize: number;
  mean: readonly number[];
  std: readonly number[];
}): (x: tf.Tensor4D) => tf.Tensor4D {
  return (x) =>
    tf.tidy(() => {
      const c = x.shape[3];
      const resized =
        x.shape[1] === opts.imageSize && x.shape[2] === opts.imageSize
          ? x
          : tf.image.resizeBilinear(x, [opts.imageSize, opts.imageSize], false, true);
      const mean = tf.tensor1d(
        opts.mean.length === c ? [...opts.mean] : Array(c).fill(opts.mean[0]),
      );
      const std = tf.tensor1d(opts.std.length === c ? [...opts.std] : Array(c).fill(opts.std[0]));
      return tf.div(tf.sub(resized, mean), std) as tf.Tensor4D;
    });
}

async function features(
  backbone: Encoder,
  set: ImageSet,
  opts: EvalOptions,
): Promise<Float32Array> {
  return extractFeatures(backbone, set.images, {
    count: set.count,
    height: set.height,
    width: set.width,
    channels: set.channels,
    batchSize: 250,
    preprocess: preprocessFor(opts),
  });
}

/** kNN and linear-probe top-1 (fractions in [0, 1]) of `backbone` on `test`, fit on `train`. */
export async function evaluateBackbone(
  backbone: Encoder,
  train: ImageSet,
  test: ImageSet,
  opts: EvalOptions,
): Promise<EvalResult> {
  if (opts.preciseBn !== false) {
    preciseBatchNorm(backbone, train, {
      bnGroupSize: opts.preciseBn?.bnGroupSize ?? 32,
      images: opts.preciseBn?.images,
      preprocess: preprocessFor(opts),
    });
  }
  const trainFeatures = await features(backbone, train, opts);
  const testFeatures = await features(backbone, test, opts);
  const numClasses = Math.max(train.classNames.length, 2);
  const knn = await knnClassify({
    trainFeatures,
    trainLabels: train.labels,
    testFeatures,
    testLabels: test.labels,
    numClasses,
    k: opts.k ?? 200,
    t: opts.t ?? 0.1,
    dim: backbone.outDim,
  });
  if (opts.linearEpochs === 0) {
    return { knnTop1: knn.top1!, linearTop1: NaN, featureDim: backbone.outDim };
  }
  const linear = await linearProbe({
    trainFeatures,
    trainLabels: train.labels,
    testFeatures,
    testLabels: test.labels,
    numClasses,
    epochs: opts.linearEpochs ?? 100,
    rng: new Rng(opts.seed ?? 0),
    dim: backbone.outDim,
  });
  return { knnTop1: knn.top1!, linearTop1: linear.top1, featureDim: backbone.outDim };
}
