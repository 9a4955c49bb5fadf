/**
 * A linear classifier on frozen features, the standard linear-evaluation protocol of
 * self-supervised learning (MoCo: one Linear layer, weight N(0, 0.01), bias 0).
 */
import { Linear, type ForwardContext, type Module, type Params, type Rng, tf } from '@disco/core';

/** The widths and parameter names of a {@link LinearClassifier}. */
export interface LinearClassifierConfig {
  /** Width of the features classified. */
  inDim: number;
  /** Number of classes, at least 2. */
  numClasses: number;
  /** Parameter name prefix; default `fc`. */
  name?: string;
}

/** Linear classifier, `[batch, inDim] -> [batch, numClasses]` logits. */
export class LinearClassifier implements Module<tf.Tensor2D, tf.Tensor2D> {
  private readonly linear: Linear;

  /** @throws when `numClasses` is not an integer >= 2. */
  constructor(
    /** The classifier's configuration, as given. */
    readonly cfg: LinearClassifierConfig,
  ) {
    if (!Number.isInteger(cfg.numClasses) || cfg.numClasses < 2) {
      throw new Error(
        `LinearClassifier: numClasses must be an integer >= 2, got ${cfg.numClasses}`,
      );
    }
    this.linear = new Linear(cfg.name ?? 'fc', {
      inFeatures: cfg.inDim,
      outFeatures: cfg.numClasses,
      init: { normalStd: 0.01 },
    });
  }

  /** Creates `<name>.weight` `[inDim, numClasses]` ~ N(0, 0.01) and `<name>.bias`, zeros. */
  init(params: Params, rng: Rng): void {
    this.linear.init(params, rng);
  }

  /** Logits `[batch, numClasses]` of features `[batch, inDim]`; the context is not used. */
  apply(params: Params, x: tf.Tensor2D, _ctx: ForwardContext): tf.Tensor2D {
    return this.linear.apply(params, x);
  }
}
