/**
 * MoCo v2 (Chen, Fan, Girshick, He 2020, arXiv 2003.04297) on top of MoCo
 * (He et al. 2020, arXiv 1911.05722): a query encoder trained by SGD, a momentum key
 * encoder, a queue of negative keys and InfoNCE at temperature 0.2. One `step` follows the
 * official order: momentum update, keys from the shuffled second view, loss and gradients
 * for the query encoder, SGD, then the keys are enqueued.
 *
 * Other objectives (DisCo's consistency loss) plug in through `extraLoss`, which adds terms
 * computed with gradients flowing into the query encoder.
 */
import {
  bindEncoder,
  type Encoder,
  type ForwardContext,
  l2Normalize,
  type Rng,
  type RngState,
  Sgd,
  tf,
} from '@disco/core';
import { infoNce } from './infonce.js';
import { momentumUpdate } from './momentum.js';
import { KeyQueue } from './queue.js';

export interface MoCoConfig {
  /** Embedding width (the head's output). Default 128. */
  dim?: number;
  /** Queue length K; must be a multiple of the batch size. Default 65536. */
  queueSize?: number;
  /** Momentum m of the key encoder EMA. Default 0.999. */
  momentum?: number;
  /** InfoNCE temperature T. Default 0.2 (MoCo v2). */
  temperature?: number;
  /** Ghost-BN group size: BN statistics per group, as per-GPU BN on 8 x 32. Default 32. */
  bnGroupSize?: number;
  /** Permute the key batch across BN groups (MoCo's shuffle BN). Default true. */
  shuffleKeys?: boolean;
  /** SGD momentum. Default 0.9. */
  sgdMomentum?: number;
  /** Coupled L2 weight decay. Default 1e-4. */
  weightDecay?: number;
}

/** The defaults of MoCo v2 as published. */
export const MOCO_V2_DEFAULTS: Required<MoCoConfig> = {
  dim: 128,
  queueSize: 65536,
  momentum: 0.999,
  temperature: 0.2,
  bnGroupSize: 32,
  shuffleKeys: true,
  sgdMomentum: 0.9,
  weightDecay: 1e-4,
};

/** What one step reports: the total loss and its named parts (all numbers). */
export interface StepMetrics {
  loss: number;
  parts: Record<string, number>;
}

/** Extra loss terms computed inside the gradient tape. */
export type ExtraLoss = (args: {
  /** The query encoder's normalised embedding of a batch, with gradients. */
  embed: (x: tf.Tensor4D) => tf.Tensor2D;
  /** Normalised embedding of view 1 (already computed, with gradients). */
  q: tf.Tensor2D;
}) => Record<string, tf.Scalar>;

/** Thrown when a step's loss is NaN or infinite; the parameters were not updated. */
export class NonFiniteLossError extends Error {
  constructor(readonly metrics: StepMetrics) {
    super(
      `loss is not finite (${metrics.loss}); parts: ` +
        Object.entries(metrics.parts)
          .map(([k, v]) => `${k}=${v}`)
          .join(', '),
    );
    this.name = 'NonFiniteLossError';
  }
}

/** MoCo v2 training state: query and key encoders, queue, optimizer. */
export class MoCo {
  readonly cfg: Required<MoCoConfig>;
  readonly query: Encoder;
  readonly key: Encoder;
  readonly queue: KeyQueue;
  readonly optimizer: Sgd;
  private readonly rng: Rng;

  /**
   * @param query the query encoder (backbone + projection head), trained in place.
   * @param rng the stream for the queue's initial keys and the key-batch permutations.
   */
  constructor(query: Encoder, rng: Rng, cfg: MoCoConfig = {}) {
    this.cfg = { ...MOCO_V2_DEFAULTS, ...cfg };
    if (query.outDim !== this.cfg.dim) {
      throw new Error(
        `MoCo: encoder output width ${query.outDim} does not match dim ${this.cfg.dim}`,
      );
    }
    if (!(this.cfg.temperature > 0)) {
      throw new Error(`MoCo: temperature must be > 0, got ${this.cfg.temperature}`);
    }
    this.query = query;
    this.key = bindEncoder(query.net, query.outDim, query.params.clone({ frozen: true }));
    this.rng = rng;
    this.queue = new KeyQueue(this.cfg.dim, this.cfg.queueSize, rng.fork('queue'));
    this.optimizer = new Sgd({ momentum: this.cfg.sgdMomentum, weightDecay: this.cfg.weightDecay });
  }

  private ctx(): ForwardContext {
    return { training: true, bnGroupSize: this.cfg.bnGroupSize };
  }

  /** Normalised embedding of `x` by the query encoder (used by monitors and tests). */
  embed(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    return tf.tidy(() => l2Normalize(this.query.apply(x, ctx)));
  }

  /**
   * Normalised keys of `x [N, H, W, C]` from the momentum encoder, in training mode, with
   * the batch permuted before the forward pass and restored after (shuffle BN).
   */
  encodeKeys(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const n = x.shape[0];
      if (!this.cfg.shuffleKeys || n <= this.cfg.bnGroupSize) {
        return l2Normalize(this.key.apply(x, this.ctx()));
      }
      const perm = this.rng.permutation(n);
      const inverse = new Int32Array(n);
      perm.forEach((p, i) => (inverse[p] = i));
      const shuffled = tf.gather(x, tf.tensor1d(perm, 'int32'));
      const k = l2Normalize(this.key.apply(shuffled, this.ctx()));
      return tf.gather(k, tf.tensor1d(inverse, 'int32'));
    });
  }

  /**
   * One training step on two views `[N, H, W, C]` of the same images at learning rate
   * `lr`. Returns the loss and its parts.
   * @throws NonFiniteLossError (before any update) when the loss is NaN or infinite.
   */
  step(
    view1: tf.Tensor4D,
    view2: tf.Tensor4D,
    lr: number,
    opts: { extraLoss?: ExtraLoss; contrastiveWeight?: number } = {},
  ): StepMetrics {
    const n = view1.shape[0];
    if (this.cfg.queueSize % n !== 0) {
      throw new Error(
        `MoCo.step: queue size K = ${this.cfg.queueSize} is not divisible by the batch size ${n}`,
      );
    }
    const contrastiveWeight = opts.contrastiveWeight ?? 1;

    // Momentum update with the weights before this step's SGD update, then the keys.
    momentumUpdate(this.key.params, this.query.params, this.cfg.momentum);
    const k = this.encodeKeys(view2);

    // Loss and gradients for the query encoder.
    const names = this.query.params.parameterNames();
    const vars = names.map((nm) => this.query.params.get(nm));
    const kept: Record<string, tf.Scalar> = {};
    const embed = (x: tf.Tensor4D) => l2Normalize(this.query.apply(x, this.ctx()));
    const { value, grads } = tf.variableGrads(() => {
      const q = embed(view1);
      const contrastive = infoNce(q, k, this.queue.keys as tf.Tensor2D, this.cfg.temperature);
      kept.infonce = tf.keep(contrastive.clone());
      let total = tf.mul(contrastive, contrastiveWeight) as tf.Scalar;
      if (opts.extraLoss) {
        for (const [name, term] of Object.entries(opts.extraLoss({ embed, q }))) {
          kept[name] = tf.keep(term.clone());
          total = tf.add(total, term);
        }
      }
      return total;
    }, vars);

    const metrics: StepMetrics = { loss: value.dataSync()[0]!, parts: {} };
    for (const [name, t] of Object.entries(kept)) {
      metrics.parts[name] = t.dataSync()[0]!;
      t.dispose();
    }
    value.dispose();
    if (!Number.isFinite(metrics.loss)) {
      for (const g of Object.values(grads)) g.dispose();
      k.dispose();
      throw new NonFiniteLossError(metrics);
    }

    // SGD on the query encoder, then enqueue the keys.
    const named = new Map(names.map((nm, i) => [nm, vars[i]!]));
    const namedGrads = new Map(names.map((nm, i) => [nm, grads[vars[i]!.name]!]));
    this.optimizer.step(named, namedGrads, lr);
    for (const g of Object.values(grads)) g.dispose();
    this.queue.enqueue(k);
    k.dispose();
    return metrics;
  }

  /** The key-batch permutation stream's state, for checkpoints. */
  rngState(): RngState {
    return this.rng.getState();
  }

  setRngState(state: RngState): void {
    this.rng.setState(state);
  }

  dispose(): void {
    this.key.params.dispose();
    this.queue.dispose();
    this.optimizer.dispose();
  }
}
