/**
 * Layers with PyTorch semantics (padding, BatchNorm momentum and epsilon, initialisation)
 * over a `Params` store. A layer object holds only its configuration and full parameter
 * names; its tensors live in the `Params` passed to `apply`, so one architecture can run
 * with several parameter sets (a student and its momentum key encoder).
 */
import type { Params } from './params.js';
import type { Rng } from './rng.js';
import { tf } from './tf.js';

/** How a forward pass runs. */
export interface ForwardContext {
  /** Training mode: BatchNorm normalises with batch statistics and updates running ones. */
  training: boolean;
  /**
   * Ghost BatchNorm: in training mode, split the batch into groups of this many samples
   * and normalise each group with its own statistics, as per-device BN does on
   * 8 GPUs x 32 images. Unset or >= batch: one group.
   */
  bnGroupSize?: number;
  /**
   * Overrides every BatchNorm layer's momentum for this pass; `1 / (i + 1)` on pass i
   * gives the plain average of i + 1 passes (precise BN). Default: each layer's own.
   */
  bnMomentum?: number;
  /**
   * Micro-batching: training-mode BatchNorm layers hand their batch statistics to this sink
   * instead of updating their running buffers, so that a batch run as several micro-batches
   * updates them once, exactly as the whole batch would (see `BnStatsSink`).
   */
  bnStats?: BnStatsSink;
}

/**
 * Collects the training-mode statistics of BatchNorm layers over the micro-batches of one
 * batch and applies them once. The running update of a whole batch is
 * `r <- (1 - m) r + m * mean over its groups of each group's statistic`; with micro-batches
 * made of whole groups of equal size, that mean is the sum over every micro-batch's groups
 * divided by their number, which is what `apply` uses. A layer called several times per
 * batch (both views through one encoder) keeps one slot per call, applied in call order.
 * Layers are told apart by name, so one sink serves one parameter set.
 */
export class BnStatsSink {
  private readonly slots = new Map<
    string,
    {
      mean: tf.Variable;
      variance: tf.Variable;
      momentum: number;
      sumMean: tf.Tensor;
      sumVar: tf.Tensor;
      groups: number;
    }[]
  >();
  private readonly calls = new Map<string, number>();

  /** Starts the next micro-batch: the per-layer call counts restart. */
  nextMicroBatch(): void {
    this.calls.clear();
  }

  /**
   * Records one call of a layer: the sums over its `groups` groups of the group means and
   * unbiased variances (`[C]` each; kept and owned by the sink).
   */
  add(
    layer: string,
    buffers: { mean: tf.Variable; variance: tf.Variable; momentum: number },
    sumMean: tf.Tensor,
    sumVar: tf.Tensor,
    groups: number,
  ): void {
    const call = this.calls.get(layer) ?? 0;
    this.calls.set(layer, call + 1);
    let list = this.slots.get(layer);
    if (!list) this.slots.set(layer, (list = []));
    const slot = list[call];
    if (slot && slot.mean !== buffers.mean) {
      tf.dispose([sumMean, sumVar]);
      throw new Error(
        `BnStatsSink: layer '${layer}' seen with two parameter sets; use one sink per encoder`,
      );
    }
    if (!slot) {
      list.push({ ...buffers, sumMean: tf.keep(sumMean), sumVar: tf.keep(sumVar), groups });
      return;
    }
    const [m, v] = [slot.sumMean, slot.sumVar];
    slot.sumMean = tf.keep(tf.add(m, sumMean));
    slot.sumVar = tf.keep(tf.add(v, sumVar));
    slot.groups += groups;
    tf.dispose([m, v, sumMean, sumVar]);
  }

  /** Updates every recorded layer's running buffers, call by call, and empties the sink. */
  apply(): void {
    tf.tidy(() => {
      for (const list of this.slots.values()) {
        for (const s of list) {
          const m = s.momentum;
          s.mean.assign(tf.add(tf.mul(s.mean, 1 - m), tf.mul(tf.div(s.sumMean, s.groups), m)));
          s.variance.assign(
            tf.add(tf.mul(s.variance, 1 - m), tf.mul(tf.div(s.sumVar, s.groups), m)),
          );
        }
      }
    });
    this.dispose();
  }

  /** Drops what was collected without touching any buffer. */
  dispose(): void {
    for (const list of this.slots.values()) {
      for (const s of list) tf.dispose([s.sumMean, s.sumVar]);
    }
    this.slots.clear();
    this.calls.clear();
  }
}

/** A building block: creates its parameters once, then runs on any compatible `Params`. */
export interface Module<I extends tf.Tensor = tf.Tensor, O extends tf.Tensor = tf.Tensor> {
  /**
   * Creates this module's parameters and buffers in `params`, under its full names, drawing
   * random initial values from `rng`. Throws if a name already exists.
   */
  init(params: Params, rng: Rng): void;
  /**
   * The forward pass of `x` with the tensors of `params`. May update BatchNorm running
   * buffers in `params` when `ctx.training` is set.
   */
  apply(params: Params, x: I, ctx: ForwardContext): O;
}

function join(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}.${name}`;
}

/** The shape and initialisation of a {@link Conv2d}. */
export interface Conv2dConfig {
  /** Input channels (the last axis of the NHWC input). */
  inChannels: number;
  /** Output channels. */
  outChannels: number;
  /** Square kernel size. */
  kernelSize: number;
  /** Stride in both spatial directions; default 1. */
  stride?: number;
  /** Symmetric zero padding on each side (PyTorch's `padding`); default `kernelSize >> 1`. */
  padding?: number;
  /** `groups === inChannels === outChannels / m` is a depthwise convolution. */
  groups?: number;
  /** Adds a bias `[outChannels]`; default false (the convolution is followed by BatchNorm). */
  bias?: boolean;
  /** Weight init: PyTorch's kaiming-normal with fan-out (torchvision ResNet, MobileNetV3). */
  init?: 'kaimingNormalFanOut' | 'pytorchDefault';
}

/**
 * 2-D convolution, NHWC in and out. Plain (`groups` 1) and depthwise convolutions are
 * supported; weights are `[kh, kw, in, out]` (plain) or `[kh, kw, in, 1]` (depthwise).
 */
export class Conv2d implements Module<tf.Tensor4D, tf.Tensor4D> {
  /** The configuration with its defaults filled in. */
  readonly cfg: Required<Omit<Conv2dConfig, 'init'>> & Pick<Conv2dConfig, 'init'>;
  /** Whether this is a depthwise convolution (`groups > 1`). */
  readonly depthwise: boolean;

  /** Throws if `groups > 1` is not a depthwise grouping (groups = in = out channels). */
  constructor(
    /** The layer's name prefix in `Params` (`layer1.0.conv1`: `.weight`, `.bias`). */
    readonly name: string,
    cfg: Conv2dConfig,
  ) {
    const groups = cfg.groups ?? 1;
    this.cfg = {
      stride: 1,
      padding: cfg.kernelSize >> 1,
      groups,
      bias: false,
      ...cfg,
    };
    this.depthwise = groups > 1;
    if (this.depthwise && (groups !== cfg.inChannels || cfg.outChannels !== cfg.inChannels)) {
      throw new Error(
        `Conv2d '${name}': only depthwise grouping (groups = in = out channels) is supported, ` +
          `got groups ${groups}, in ${cfg.inChannels}, out ${cfg.outChannels}`,
      );
    }
  }

  init(params: Params, rng: Rng): void {
    const { inChannels: ci, outChannels: co, kernelSize: k, groups } = this.cfg;
    const shape = this.depthwise ? [k, k, ci, 1] : [k, k, ci, co];
    const size = shape.reduce((a, b) => a * b, 1);
    let values: Float32Array;
    if ((this.cfg.init ?? 'kaimingNormalFanOut') === 'kaimingNormalFanOut') {
      const fanOut = (co / groups) * k * k;
      values = rng.normalArray(size, 0, Math.sqrt(2 / fanOut));
    } else {
      const bound = 1 / Math.sqrt((ci / groups) * k * k);
      values = rng.uniformArray(size, -bound, bound);
    }
    params.add(join(this.name, 'weight'), tf.tensor(values, shape), {
      layout: this.depthwise ? 'depthwise' : 'conv2d',
    });
    if (this.cfg.bias) {
      const bound = 1 / Math.sqrt((ci / groups) * k * k);
      params.add(join(this.name, 'bias'), tf.tensor1d(rng.uniformArray(co, -bound, bound)));
    }
  }

  apply(params: Params, x: tf.Tensor4D): tf.Tensor4D {
    const { stride, padding: p } = this.cfg;
    const w = params.get(join(this.name, 'weight')) as tf.Tensor4D;
    const pad: [[number, number], [number, number], [number, number], [number, number]] = [
      [0, 0],
      [p, p],
      [p, p],
      [0, 0],
    ];
    let y = this.depthwise
      ? tf.depthwiseConv2d(x, w, stride, p === 0 ? 'valid' : pad)
      : tf.conv2d(x, w, stride, p === 0 ? 'valid' : pad);
    if (this.cfg.bias) y = tf.add(y, params.get(join(this.name, 'bias')));
    return y;
  }
}

/** The size and constants of a {@link BatchNorm}. */
export interface BatchNormConfig {
  /** Channels normalised (the last axis of the input). */
  channels: number;
  /** PyTorch default 1e-5; torchvision's MobileNetV3 uses 1e-3. */
  eps?: number;
  /** PyTorch's convention: running = (1 - momentum) * running + momentum * batch. */
  momentum?: number;
}

/**
 * Batch normalisation over the channel (last) axis, as PyTorch's BatchNorm1d/2d: in
 * training mode, batch statistics (biased variance to normalise, unbiased to update the
 * running variance); in eval mode, running statistics.
 */
export class BatchNorm implements Module {
  /** The epsilon added to the variance; default 1e-5. */
  readonly eps: number;
  /** The running-statistics momentum (PyTorch's convention); default 0.1. */
  readonly momentum: number;

  constructor(
    /**
     * The layer's name prefix in `Params`: `.weight`, `.bias` and the buffers `.running_mean`,
     * `.running_var`, as PyTorch names them.
     */
    readonly name: string,
    /** The layer's configuration, as given. */
    readonly cfg: BatchNormConfig,
  ) {
    this.eps = cfg.eps ?? 1e-5;
    this.momentum = cfg.momentum ?? 0.1;
  }

  init(params: Params): void {
    const c = this.cfg.channels;
    params.add(join(this.name, 'weight'), tf.ones([c]));
    params.add(join(this.name, 'bias'), tf.zeros([c]));
    params.add(join(this.name, 'running_mean'), tf.zeros([c]), { buffer: true });
    params.add(join(this.name, 'running_var'), tf.ones([c]), { buffer: true });
  }

  apply(params: Params, x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const gamma = params.get(join(this.name, 'weight'));
    const beta = params.get(join(this.name, 'bias'));
    const runningMean = params.get(join(this.name, 'running_mean'));
    const runningVar = params.get(join(this.name, 'running_var'));
    if (!ctx.training) {
      const scale = tf.mul(gamma, tf.rsqrt(tf.add(runningVar, this.eps)));
      return tf.add(tf.mul(tf.sub(x, runningMean), scale), beta);
    }

    // Ghost BN: [n, ...] -> [groups, n / groups, ...], statistics per group.
    const n = x.shape[0]!;
    const size = ctx.bnGroupSize && ctx.bnGroupSize < n ? ctx.bnGroupSize : n;
    if (n % size !== 0) {
      throw new Error(
        `BatchNorm '${this.name}': batch ${n} is not divisible by the BN group size ${size}`,
      );
    }
    const { y, mean, variance } = batchNormTrain(x, gamma, beta, n / size, this.eps);

    // Running statistics: the mean over groups of each group's statistics, with the
    // unbiased variance, as PyTorch (per device) does.
    const c = this.cfg.channels;
    const count = x.size / ((n / size) * c);
    const m = ctx.bnMomentum ?? this.momentum;
    if (ctx.bnStats) {
      const sink = ctx.bnStats;
      tf.tidy(() => {
        const sumMean = tf.sum(tf.reshape(mean, [-1, c]), 0);
        const sumVar = tf.mul(
          tf.sum(tf.reshape(variance, [-1, c]), 0),
          count / Math.max(count - 1, 1),
        );
        sink.add(
          this.name,
          { mean: runningMean, variance: runningVar, momentum: m },
          tf.keep(sumMean),
          tf.keep(sumVar),
          n / size,
        );
      });
      mean.dispose();
      variance.dispose();
      return y;
    }
    tf.tidy(() => {
      const batchMean = tf.mean(tf.reshape(mean, [-1, c]), 0);
      const unbiased = tf.mul(
        tf.mean(tf.reshape(variance, [-1, c]), 0),
        count / Math.max(count - 1, 1),
      );
      runningMean.assign(tf.add(tf.mul(runningMean, 1 - m), tf.mul(batchMean, m)));
      runningVar.assign(tf.add(tf.mul(runningVar, 1 - m), tf.mul(unbiased, m)));
    });
    mean.dispose();
    variance.dispose();
    return y;
  }
}

/**
 * Training-mode batch normalisation of `x [N, ..., C]` in `groups` equal groups along the
 * batch, with a hand-written gradient: per group, with xhat the normalised input and m the
 * number of values per channel,
 *   dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
 *   dgamma = sum(dy * xhat), dbeta = sum(dy).
 * This is a handful of reductions, where differentiating the forward ops would record
 * several broadcasts and a slow Tile on the wasm backend.
 * Returns y and the per-group statistics `[groups, 1, ..., C]` (the caller disposes them).
 */
function batchNormTrain(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  groups: number,
  eps: number,
): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  const shape = x.shape;
  const grouped = [groups, shape[0]! / groups, ...shape.slice(1)];
  const c = shape[shape.length - 1]!;
  const m = x.size / (groups * c);
  // Per-group channel means. The wasm backend's Sum/Mean over leading axes transposes the
  // whole tensor first, and a matMul with the tensor as its right operand repacks it at
  // every call (about 40 ms for 2M values, against 0.3 ms when the operand is reused). So a
  // feature map is averaged over its pixels by an average pool (one pass, channels last),
  // then over each group's images; a matrix [N, C] by a batched matMul with a row of 1/m.
  // The row is made at each use: the gradient runs after this function has returned.
  const perGroup = shape[0]! / groups;
  const pixels = shape.length === 4 ? shape[1]! * shape[2]! : 1;
  const groupMean = (t: tf.Tensor) =>
    tf.tidy(() => {
      if (pixels > 1) {
        const [n, h, w] = shape as [number, number, number, number];
        const image = tf.reshape<tf.Rank.R4>(t, [n, h, w, c]);
        const perImage = tf.avgPool(image, [h, w], 1, 'valid');
        return tf.reshape(tf.mean(tf.reshape(perImage, [groups, perGroup, c]), 1), statShape);
      }
      return tf.reshape(
        tf.matMul(
          tf.fill([groups, 1, m], 1 / m) as tf.Tensor3D,
          tf.reshape(t, [groups, m, c]) as tf.Tensor3D,
        ),
        statShape,
      );
    });
  const statShape = [groups, ...Array(grouped.length - 2).fill(1), c];
  let stats: { mean: tf.Tensor; variance: tf.Tensor } | null = null;
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, g, b, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const xg = tf.reshape(xi, grouped);
    const mean = groupMean(xg);
    const centered = tf.sub(xg, mean);
    const variance = groupMean(tf.square(centered));
    const rstd = tf.rsqrt(tf.add(variance, eps));
    const xhat = tf.mul(centered, rstd);
    const y = tf.reshape(tf.add(tf.mul(xhat, g), b), shape);
    stats = { mean: tf.keep(mean.clone()), variance: tf.keep(variance.clone()) };
    save([xhat, rstd, g]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sxhat, srstd, sg] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const dyg = tf.reshape(dy, grouped);
        const dyXhat = tf.mul(dyg, sxhat);
        const meanDy = groupMean(dyg);
        const meanDyXhat = groupMean(dyXhat);
        // Sums over groups of the group means, times m: the gradients of gamma and beta.
        const dgamma = tf.mul(tf.sum(tf.reshape(meanDyXhat, [groups, c]), 0), m);
        const dbeta = tf.mul(tf.sum(tf.reshape(meanDy, [groups, c]), 0), m);
        const inner = tf.sub(tf.sub(dyg, meanDy), tf.mul(sxhat, meanDyXhat));
        const dx = tf.reshape(tf.mul(inner, tf.mul(srstd, sg)), shape);
        return [dx, dgamma, dbeta];
      },
    };
  });
  const y = (f as (...t: tf.Tensor[]) => tf.Tensor)(x, gamma, beta);
  const s = stats as unknown as { mean: tf.Tensor; variance: tf.Tensor };
  return { y, mean: s.mean, variance: s.variance };
}

/** The shape and initialisation of a {@link Linear} layer. */
export interface LinearConfig {
  /** Input features (the last axis of the input). */
  inFeatures: number;
  /** Output features. */
  outFeatures: number;
  /** Adds a bias `[outFeatures]`; default true. */
  bias?: boolean;
  /** `pytorchDefault`: U(+-1/sqrt(fan_in)) for weight and bias; `normal`: N(0, std), bias 0. */
  init?:
    | 'pytorchDefault'
    | {
        /** Standard deviation of the normal weight init. */
        normalStd: number;
      };
}

/** Fully connected layer, `[batch, in] -> [batch, out]`, weight stored `[in, out]`. */
export class Linear implements Module<tf.Tensor2D, tf.Tensor2D> {
  constructor(
    /** The layer's name prefix in `Params` (`fc`: `fc.weight`, `fc.bias`). */
    readonly name: string,
    /** The layer's configuration, as given. */
    readonly cfg: LinearConfig,
  ) {}

  init(params: Params, rng: Rng): void {
    const { inFeatures: fi, outFeatures: fo } = this.cfg;
    const init = this.cfg.init ?? 'pytorchDefault';
    const bound = 1 / Math.sqrt(fi);
    const w =
      init === 'pytorchDefault'
        ? rng.uniformArray(fi * fo, -bound, bound)
        : rng.normalArray(fi * fo, 0, init.normalStd);
    params.add(join(this.name, 'weight'), tf.tensor2d(w, [fi, fo]), { layout: 'linear' });
    if (this.cfg.bias ?? true) {
      const b =
        init === 'pytorchDefault' ? rng.uniformArray(fo, -bound, bound) : new Float32Array(fo);
      params.add(join(this.name, 'bias'), tf.tensor1d(b));
    }
  }

  apply(params: Params, x: tf.Tensor2D): tf.Tensor2D {
    const y = tf.matMul(x, params.get(join(this.name, 'weight'))) as tf.Tensor2D;
    if (this.cfg.bias === false) return y;
    return tf.add(y, params.get(join(this.name, 'bias'))) as tf.Tensor2D;
  }
}

/** The activations the supported architectures use, as PyTorch defines them. */
export type Activation =
  'relu' | 'relu6' | 'hardswish' | 'hardsigmoid' | 'sigmoid' | 'silu' | 'identity';

/** Applies the activation `kind` elementwise; `x` keeps its shape (`identity` returns it). */
export function activate<T extends tf.Tensor>(x: T, kind: Activation): T {
  switch (kind) {
    case 'relu':
      return tf.relu(x);
    case 'relu6':
      return tf.relu6(x);
    case 'hardswish':
      return tf.mul(x, tf.div(tf.relu6(tf.add(x, 3)), 6));
    case 'hardsigmoid':
      return tf.div(tf.relu6(tf.add(x, 3)), 6);
    case 'sigmoid':
      return tf.sigmoid(x);
    case 'silu':
      return tf.mul(x, tf.sigmoid(x));
    case 'identity':
      return x;
  }
}

/** Global average pooling, `[n, h, w, c] -> [n, c]`. */
export function globalAvgPool(x: tf.Tensor4D): tf.Tensor2D {
  return tf.mean(x, [1, 2]) as tf.Tensor2D;
}

/** L2 normalisation along the last axis, as `F.normalize(x, dim=1)` (eps 1e-12). */
export function l2Normalize<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => {
    const norm = tf.sqrt(tf.sum(tf.square(x), -1, true));
    return tf.div(x, tf.maximum(norm, 1e-12)) as T;
  });
}
