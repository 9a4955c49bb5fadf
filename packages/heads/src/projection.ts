/**
 * The projection MLP of MoCo v2 (Chen et al. 2020, arXiv 2003.04297) and DisCo
 * (Gao et al. 2022, arXiv 2104.09124): Linear(in -> hidden) -> ReLU -> Linear(hidden -> out).
 * DisCo widens the student's hidden layer to 2048 to remove the "distilling bottleneck";
 * the head is dropped after training, so the width costs nothing at deployment.
 */
import { Linear, type ForwardContext, type Module, type Params, type Rng, tf } from '@disco/core';

/** The widths and parameter names of a {@link ProjectionHead}. */
export interface ProjectionHeadConfig {
  /** Width of the backbone feature fed to the head. */
  inDim: number;
  /** Hidden width; 0 gives a single Linear(in -> out). Default 2048 (DisCo's student head). */
  hiddenDim?: number;
  /** Embedding width; default 128 as in MoCo v2. */
  outDim?: number;
  /** Parameter name prefix; `fc` matches MoCo v2 ResNet checkpoints (`fc.0`, `fc.2`). */
  name?: string;
}

/** Projection MLP, `[batch, inDim] -> [batch, outDim]` (not normalised). */
export class ProjectionHead implements Module<tf.Tensor2D, tf.Tensor2D> {
  /** Width of the backbone feature fed to the head. */
  readonly inDim: number;
  /** Hidden width; 0 for a single linear layer. */
  readonly hiddenDim: number;
  /** Embedding width. */
  readonly outDim: number;
  private readonly layers: Linear[];

  /** @throws when `inDim` or `outDim` is not a positive integer, or `hiddenDim` is negative. */
  constructor(cfg: ProjectionHeadConfig) {
    const { inDim, hiddenDim = 2048, outDim = 128, name = 'head' } = cfg;
    for (const [field, value] of Object.entries({ inDim, outDim })) {
      if (!Number.isInteger(value) || value <= 0) {
        throw new Error(`ProjectionHead: ${field} must be a positive integer, got ${value}`);
      }
    }
    if (!Number.isInteger(hiddenDim) || hiddenDim < 0) {
      throw new Error(`ProjectionHead: hiddenDim must be an integer >= 0, got ${hiddenDim}`);
    }
    this.inDim = inDim;
    this.hiddenDim = hiddenDim;
    this.outDim = outDim;
    this.layers =
      hiddenDim === 0
        ? [new Linear(name, { inFeatures: inDim, outFeatures: outDim })]
        : [
            new Linear(`${name}.0`, { inFeatures: inDim, outFeatures: hiddenDim }),
            new Linear(`${name}.2`, { inFeatures: hiddenDim, outFeatures: outDim }),
          ];
  }

  /**
   * Creates `<name>.0` and `<name>.2` (`.weight` and `.bias` each, PyTorch's default init),
   * or `<name>` alone when `hiddenDim` is 0.
   */
  init(params: Params, rng: Rng): void {
    for (const layer of this.layers) layer.init(params, rng);
  }

  /** Embeddings `[batch, outDim]` of features `[batch, inDim]`; the context is not used. */
  apply(params: Params, x: tf.Tensor2D, _ctx: ForwardContext): tf.Tensor2D {
    if (x.shape[1] !== this.inDim) {
      throw new Error(
        `ProjectionHead: input width ${x.shape[1]} does not match inDim ${this.inDim}`,
      );
    }
    if (this.layers.length === 1) return this.layers[0]!.apply(params, x);
    const h = tf.relu(this.layers[0]!.apply(params, x));
    return this.layers[1]!.apply(params, h);
  }
}
