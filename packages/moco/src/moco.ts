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
  BnStatsSink,
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

/** The MoCo v2 settings of a {@link MoCo} run; every field has a default. */
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
  /** The total loss of the step (InfoNCE times its weight, plus the extra terms). */
  loss: number;
  /**
   * The terms by name, batch means: `infonce` (before `contrastiveWeight`) and each extra
   * term as the extra loss returned it.
   */
  parts: Record<string, number>;
}

/**
 * Extra loss terms computed inside the gradient tape, once per micro-batch (once per step
 * without micro-batching). Each term is a mean over the micro-batch's samples; the step
 * weights micro-batches by their share of the batch.
 */
export type ExtraLoss = (args: {
  /** The query encoder's normalised embedding of a batch, with gradients. */
  embed: (x: tf.Tensor4D) => tf.Tensor2D;
  /** Normalised embedding of `view1` (already computed, with gradients). */
  q: tf.Tensor2D;
  /** The micro-batch's rows of each view. */
  view1: tf.Tensor4D;
  /** The micro-batch's rows of view 2. */
  view2: tf.Tensor4D;
  /** Where the micro-batch lies in the step's batch: rows `[start, end)`. */
  rows: { start: number; end: number };
}) => Record<string, tf.Scalar>;

/** Options of `MoCo.step`. */
export interface StepOptions {
  /** Terms added to the InfoNCE loss inside the tape (DisCo's consistency terms). */
  extraLoss?: ExtraLoss;
  /** Weight of the InfoNCE term (default 1; 0 gives DisCo's only-mse ablation). */
  contrastiveWeight?: number;
  /**
   * Micro-batch size: the batch runs as micro-batches of this many samples (whole BN groups)
   * whose gradients are summed before one SGD update, as the devices of a data-parallel run
   * would. Per-sample losses make the result the whole batch's: the same gradient, BN
   * statistics per group, running statistics updated once, keys shuffled across the whole
   * batch. It bounds the memory of a step whatever the batch. Default: the whole batch.
   */
  microBatch?: number;
}

/** Thrown when a step's loss is NaN or infinite; the parameters were not updated. */
export class NonFiniteLossError extends Error {
  constructor(
    /** The step's loss and parts, at least one of them NaN or infinite. */
    readonly metrics: StepMetrics,
  ) {
    super(
      `loss is not finite (${metrics.loss}); parts: ` +
        Object.entries(metrics.parts)
          .map(([k, v]) => `${k}=${v}`)
          .join(', '),
    );
    this.name = 'NonFiniteLossError';
  }
}

function inversePermutation(perm: Int32Array): Int32Array {
  const inverse = new Int32Array(perm.length);
  perm.forEach((p, i) => (inverse[p] = i));
  return inverse;
}

/** MoCo v2 training state: query and key encoders, queue, optimizer. */
export class MoCo {
  /** The configuration with its defaults filled in. */
  readonly cfg: Required<MoCoConfig>;
  /** The query encoder (the student), trained by SGD. */
  readonly query: Encoder;
  /** The momentum key encoder: same network, its own frozen copy of the parameters. */
  readonly key: Encoder;
  /** The queue of negative keys. */
  readonly queue: KeyQueue;
  /** The SGD optimizer of the query encoder (its momentum buffers go into checkpoints). */
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
   * the batch permuted before the forward pass and restored after (shuffle BN). With
   * `microBatch`, the permuted batch runs in micro-batches of that many samples.
   */
  encodeKeys(x: tf.Tensor4D, microBatch?: number): tf.Tensor2D {
    const n = x.shape[0];
    const shuffle = this.cfg.shuffleKeys && n > this.cfg.bnGroupSize;
    const perm = shuffle ? this.rng.permutation(n) : null;
    const size = microBatch ?? n;
    if (size >= n) {
      return tf.tidy(() => {
        if (!perm) return l2Normalize(this.key.apply(x, this.ctx()));
        const k = l2Normalize(this.key.apply(tf.gather(x, tf.tensor1d(perm, 'int32')), this.ctx()));
        return tf.gather(k, tf.tensor1d(inversePermutation(perm), 'int32'));
      });
    }
    const sink = new BnStatsSink();
    const order = perm ?? Int32Array.from({ length: n }, (_, i) => i);
    const parts: tf.Tensor2D[] = [];
    try {
      for (let start = 0; start < n; start += size) {
        sink.nextMicroBatch();
        const rows = order.subarray(start, Math.min(start + size, n));
        parts.push(
          tf.tidy(() => {
            const xs = tf.gather(x, tf.tensor1d(rows, 'int32'));
            return l2Normalize(this.key.apply(xs, { ...this.ctx(), bnStats: sink }));
          }),
        );
      }
      sink.apply();
      return tf.tidy(() => {
        const k = tf.concat(parts, 0);
        return perm ? tf.gather(k, tf.tensor1d(inversePermutation(perm), 'int32')) : k;
      });
    } finally {
      sink.dispose();
      tf.dispose(parts);
    }
  }

  /**
   * One training step on two views `[N, H, W, C]` of the same images at learning rate
   * `lr`. Returns the loss and its parts (batch means).
   * @throws NonFiniteLossError (before any update) when the loss is NaN or infinite.
   */
  step(view1: tf.Tensor4D, view2: tf.Tensor4D, lr: number, opts: StepOptions = {}): StepMetrics {
    const n = view1.shape[0];
    if (this.cfg.queueSize % n !== 0) {
      throw new Error(
        `MoCo.step: queue size K = ${this.cfg.queueSize} is not divisible by the batch size ${n}`,
      );
    }
    const micro = this.checkMicroBatch(n, opts.microBatch);
    const contrastiveWeight = opts.contrastiveWeight ?? 1;

    // Momentum update with the weights before this step's SGD update, then the keys.
    momentumUpdate(this.key.params, this.query.params, this.cfg.momentum);
    const k = this.encodeKeys(view2, micro);

    // Loss and gradients for the query encoder, micro-batch by micro-batch.
    const names = this.query.params.parameterNames();
    const vars = names.map((nm) => this.query.params.get(nm));
    const sink = micro < n ? new BnStatsSink() : undefined;
    const ctx: ForwardContext = { ...this.ctx(), ...(sink ? { bnStats: sink } : {}) };
    const embed = (x: tf.Tensor4D) => l2Normalize(this.query.apply(x, ctx));
    const metrics: StepMetrics = { loss: 0, parts: {} };
    let sum: tf.Tensor[] | null = null;
    try {
      for (let start = 0; start < n; start += micro) {
        const end = Math.min(start + micro, n);
        const share = (end - start) / n;
        sink?.nextMicroBatch();
        const kept: Record<string, tf.Scalar> = {};
        const chunk = (v: tf.Tensor4D) =>
          micro < n ? (tf.slice(v, [start, 0, 0, 0], [end - start, -1, -1, -1]) as tf.Tensor4D) : v;
        const v1 = chunk(view1);
        const v2 = chunk(view2);
        const kc = micro < n ? (tf.slice(k, [start, 0], [end - start, -1]) as tf.Tensor2D) : k;
        const { value, grads } = tf.variableGrads(() => {
          const q = embed(v1);
          const contrastive = infoNce(q, kc, this.queue.keys as tf.Tensor2D, this.cfg.temperature);
          kept.infonce = tf.keep(contrastive.clone());
          let total = tf.mul(contrastive, contrastiveWeight) as tf.Scalar;
          if (opts.extraLoss) {
            const terms = opts.extraLoss({ embed, q, view1: v1, view2: v2, rows: { start, end } });
            for (const [name, term] of Object.entries(terms)) {
              kept[name] = tf.keep(term.clone());
              total = tf.add(total, term);
            }
          }
          return (share === 1 ? total : tf.mul(total, share)) as tf.Scalar;
        }, vars);
        if (micro < n) tf.dispose([v1, v2, kc]);
        metrics.loss += value.dataSync()[0]!;
        value.dispose();
        for (const [name, t] of Object.entries(kept)) {
          metrics.parts[name] = (metrics.parts[name] ?? 0) + share * t.dataSync()[0]!;
          t.dispose();
        }
        const g = vars.map((v) => grads[v.name]!);
        if (sum === null) sum = g;
        else {
          const prev: tf.Tensor[] = sum;
          sum = prev.map((s, i) => tf.add(s, g[i]!));
          tf.dispose([...prev, ...g]);
        }
      }
      if (!Number.isFinite(metrics.loss)) throw new NonFiniteLossError(metrics);

      // Running statistics, SGD on the query encoder, then enqueue the keys.
      sink?.apply();
      const named = new Map(names.map((nm, i) => [nm, vars[i]!]));
      const namedGrads = new Map(names.map((nm, i) => [nm, sum![i]!]));
      this.optimizer.step(named, namedGrads, lr);
      this.queue.enqueue(k);
      return metrics;
    } finally {
      sink?.dispose();
      if (sum) tf.dispose(sum);
      k.dispose();
    }
  }

  private checkMicroBatch(n: number, microBatch: number | undefined): number {
    if (microBatch === undefined || microBatch >= n) return n;
    const g = this.cfg.bnGroupSize;
    if (!Number.isInteger(microBatch) || microBatch <= 0 || n % microBatch !== 0) {
      throw new Error(
        `MoCo.step: microBatch ${microBatch} must be a positive integer that divides the batch ${n}`,
      );
    }
    if (g < n && microBatch % g !== 0) {
      throw new Error(
        `MoCo.step: microBatch ${microBatch} must be a multiple of the BN group size ${g}`,
      );
    }
    return microBatch;
  }

  /** The key-batch permutation stream's state, for checkpoints. */
  rngState(): RngState {
    return this.rng.getState();
  }

  /** Restores the key-batch permutation stream (from `rngState`, on resume). */
  setRngState(state: RngState): void {
    this.rng.setState(state);
  }

  /** Frees the key encoder's parameters, the queue and the optimizer's buffers. */
  dispose(): void {
    this.key.params.dispose();
    this.queue.dispose();
    this.optimizer.dispose();
  }
}
