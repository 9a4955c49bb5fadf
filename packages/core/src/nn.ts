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
}

/** A building block: creates its parameters once, then runs on any compatible `Params`. */
export interface Module<I extends tf.Tensor = tf.Tensor, O extends tf.Tensor = tf.Tensor> {
  init(params: Params, rng: Rng): void;
  apply(params: Params, x: I, ctx: ForwardContext): O;
}

function join(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}.${name}`;
}

export interface Conv2dConfig {
  inChannels: number;
  outChannels: number;
  kernelSize: number;
  stride?: number;
  /** Symmetric zero padding on each side (PyTorch's `padding`); default `kernelSize >> 1`. */
  padding?: number;
  /** `groups === inChannels === outChannels / m` is a depthwise convolution. */
  groups?: number;
  bias?: boolean;
  /** Weight init: PyTorch's kaiming-normal with fan-out (torchvision ResNet, MobileNetV3). */
  init?: 'kaimingNormalFanOut' | 'pytorchDefault';
}

/**
 * 2-D convolution, NHWC in and out. Plain (`groups` 1) and depthwise convolutions are
 * supported; weights are `[kh, kw, in, out]` (plain) or `[kh, kw, in, 1]` (depthwise).
 */
export class Conv2d implements Module<tf.Tensor4D, tf.Tensor4D> {
  readonly cfg: Required<Omit<Conv2dConfig, 'init'>> & Pick<Conv2dConfig, 'init'>;
  readonly depthwise: boolean;

  constructor(
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

export interface BatchNormConfig {
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
  readonly eps: number;
  readonly momentum: number;

  constructor(
    readonly name: string,
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
    const groups = n / size;
    const xg = groups > 1 ? tf.reshape(x, [groups, size, ...x.shape.slice(1)]) : x;
    const axes = [...Array(xg.rank - 1).keys()].slice(groups > 1 ? 1 : 0);
    const { mean, variance } = tf.moments(xg, axes, true);
    const y = tf.add(tf.mul(tf.mul(tf.sub(xg, mean), tf.rsqrt(tf.add(variance, this.eps))), gamma), beta);

    // Running statistics: the mean over groups of each group's statistics.
    const count = xg.size / (groups * this.cfg.channels);
    const m = this.momentum;
    tf.tidy(() => {
      const c = this.cfg.channels;
      const batchMean = tf.mean(tf.reshape(mean, [-1, c]), 0);
      const unbiased = tf.mul(tf.mean(tf.reshape(variance, [-1, c]), 0), count / Math.max(count - 1, 1));
      runningMean.assign(tf.add(tf.mul(runningMean, 1 - m), tf.mul(batchMean, m)));
      runningVar.assign(tf.add(tf.mul(runningVar, 1 - m), tf.mul(unbiased, m)));
    });
    return groups > 1 ? tf.reshape(y, x.shape) : y;
  }
}

export interface LinearConfig {
  inFeatures: number;
  outFeatures: number;
  bias?: boolean;
  /** `pytorchDefault`: U(+-1/sqrt(fan_in)) for weight and bias; `normal`: N(0, std), bias 0. */
  init?: 'pytorchDefault' | { normalStd: number };
}

/** Fully connected layer, `[batch, in] -> [batch, out]`, weight stored `[in, out]`. */
export class Linear implements Module<tf.Tensor2D, tf.Tensor2D> {
  constructor(
    readonly name: string,
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
      const b = init === 'pytorchDefault' ? rng.uniformArray(fo, -bound, bound) : new Float32Array(fo);
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
export type Activation = 'relu' | 'relu6' | 'hardswish' | 'hardsigmoid' | 'silu' | 'identity';

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
