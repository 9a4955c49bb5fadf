/**
 * The backbone contract of @disco/backbones: the options every family understands, the module
 * the family builders return, and the forward plumbing they share (input checks, pooling, the
 * optional head feature and classifier). A family supplies its layers and its feature map.
 */
import { globalAvgPool, tf } from '@disco/core';
import type { ForwardContext, Linear, Module, Params, Rng } from '@disco/core';

/** Options of `createBackbone`; each family documents how it reads them. */
export interface BackboneOptions {
  /** Channels of the input images: 3 for RGB (default), 1 for grayscale data. */
  inChannels?: number;
  /** Scales the stem and every stage width (default 1); the rounding rule is the family's. */
  widthMultiplier?: number;
  /** A stem for 32x32-class inputs (CIFAR, MNIST) that keeps more resolution (default false). */
  smallStem?: boolean;
  /**
   * Builds torchvision's final classifier (`fc` for ResNet, `classifier.3` for MobileNetV3)
   * with this many classes, so a full torchvision checkpoint loads strictly and
   * `applyLogits` works. Default: not built.
   */
  withClassifier?: number;
  /**
   * What `apply` returns. `'pooled'` (default): the globally pooled last feature map.
   * `'head'`: MobileNetV3 only, the `classifier.0` Linear + Hardswish feature after it.
   */
  output?: 'pooled' | 'head';
}

/** Every output of one forward pass; `head` and `logits` only where the model has them. */
export interface BackboneOutputs {
  /** Globally average-pooled last feature map, `[batch, pooledDim]`. */
  pooled: tf.Tensor2D;
  /** MobileNetV3 head feature (Linear + Hardswish on `pooled`), `[batch, headDim]`. */
  head?: tf.Tensor2D;
  /** Final classifier output, `[batch, numClasses]`, when built with `withClassifier`. */
  logits?: tf.Tensor2D;
}

/**
 * A backbone: NHWC float images `[batch, height, width, inChannels]` in, features
 * `[batch, featureDim]` out. Stateless; its tensors live in the `Params` given to each call,
 * named exactly as torchvision's state-dict keys and created in state-dict order.
 */
export interface Backbone extends Module<tf.Tensor4D, tf.Tensor2D> {
  /** Registry name, such as `resnet50` or `mobilenet_v3_small`. */
  readonly arch: string;
  /** Channels of the input images. */
  readonly inChannels: number;
  /** Width of what `apply` returns (`pooledDim`, or the head width with `output: 'head'`). */
  readonly featureDim: number;
  /** Width of the pooled feature map. */
  readonly pooledDim: number;
  /** Classes of the final classifier; 0 when it is not built. */
  readonly numClasses: number;
  /** Creates the parameters, in torchvision's state-dict order, with torchvision's init. */
  init(params: Params, rng: Rng): void;
  /** The feature, `[batch, featureDim]`. */
  apply(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D;
  /** The last feature map before pooling, `[batch, h', w', pooledDim]`. */
  applyFeatureMap(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D;
  /** Pooled feature, head feature and logits from one pass. */
  applyAll(params: Params, x: tf.Tensor4D, ctx: ForwardContext): BackboneOutputs;
  /**
   * Class scores `[batch, numClasses]`.
   * @throws when the backbone was built without `withClassifier`.
   */
  applyLogits(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D;
}

/** The shape of a family: its widths and the optional pieces after the pooled feature. */
export interface BackboneShape {
  /** Registry name, such as `resnet50`. */
  arch: string;
  /** Channels of the input images. */
  inChannels: number;
  /** Width of the pooled last feature map. */
  pooledDim: number;
  /** Width of the head feature; 0 for a family without one. */
  headDim: number;
  /** Classes of the final classifier; 0 when it is not built. */
  numClasses: number;
  /** What `apply` returns: the pooled feature or the head feature. */
  output: 'pooled' | 'head';
}

/**
 * Shared forward plumbing. A family implements `init`, `featureMap` (stem and stages),
 * `headFeature` (when `headDim > 0`) and `classifier` (when `numClasses > 0`).
 */
export abstract class BackboneBase implements Backbone {
  readonly arch: string;
  readonly inChannels: number;
  readonly featureDim: number;
  readonly pooledDim: number;
  readonly numClasses: number;
  /** Width of the head feature; 0 for a family without one. */
  protected readonly headDim: number;
  /** What `apply` returns: the pooled feature or the head feature. */
  protected readonly output: 'pooled' | 'head';

  protected constructor(shape: BackboneShape) {
    this.arch = shape.arch;
    this.inChannels = shape.inChannels;
    this.pooledDim = shape.pooledDim;
    this.numClasses = shape.numClasses;
    this.headDim = shape.headDim;
    this.output = shape.output;
    this.featureDim = shape.output === 'head' ? shape.headDim : shape.pooledDim;
  }

  abstract init(params: Params, rng: Rng): void;

  /** Stem and stages, `[batch, h, w, inChannels] -> [batch, h', w', pooledDim]`. */
  protected abstract featureMap(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D;

  /** The head feature on the pooled one, `[batch, pooledDim] -> [batch, headDim]`. */
  protected headFeature(_params: Params, _pooled: tf.Tensor2D): tf.Tensor2D {
    throw new Error(`${this.arch}: this family has no head feature`);
  }

  /** The final classifier, or null when not built. */
  protected abstract readonly classifier: Linear | null;

  apply(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    this.checkInput('apply', x);
    return tf.tidy(() => {
      const pooled = globalAvgPool(this.featureMap(params, x, ctx));
      return this.output === 'head' ? this.headFeature(params, pooled) : pooled;
    });
  }

  applyFeatureMap(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    this.checkInput('applyFeatureMap', x);
    return tf.tidy(() => this.featureMap(params, x, ctx));
  }

  applyAll(params: Params, x: tf.Tensor4D, ctx: ForwardContext): BackboneOutputs {
    this.checkInput('applyAll', x);
    return tf.tidy(() => {
      const out: BackboneOutputs = { pooled: globalAvgPool(this.featureMap(params, x, ctx)) };
      if (this.headDim > 0) out.head = this.headFeature(params, out.pooled);
      if (this.classifier) out.logits = this.classifier.apply(params, out.head ?? out.pooled);
      return out as unknown as tf.TensorContainer;
    }) as unknown as BackboneOutputs;
  }

  applyLogits(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    this.checkInput('applyLogits', x);
    const classifier = this.classifier;
    if (!classifier) {
      throw new Error(
        `${this.arch}.applyLogits: built without a classifier; pass withClassifier: <classes> ` +
          `to createBackbone`,
      );
    }
    return tf.tidy(() => {
      const pooled = globalAvgPool(this.featureMap(params, x, ctx));
      return classifier.apply(params, this.headDim > 0 ? this.headFeature(params, pooled) : pooled);
    });
  }

  private checkInput(fn: string, x: tf.Tensor4D): void {
    if (x.rank !== 4 || x.shape[3] !== this.inChannels || x.dtype !== 'float32') {
      throw new Error(
        `${this.arch}.${fn}: input must be float32 [batch, height, width, ${this.inChannels}] ` +
          `(NHWC), got ${x.dtype} [${x.shape}]`,
      );
    }
  }
}
