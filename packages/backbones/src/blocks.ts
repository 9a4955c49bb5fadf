/**
 * The blocks MobileNetV3 and EfficientNet share, with torchvision's names: a convolution
 * followed by BatchNorm and an activation, and squeeze-excitation. Each family passes its own
 * BatchNorm settings and activations.
 */
import { activate, BatchNorm, Conv2d, tf } from '@disco/core';
import type { Activation, ForwardContext, Module, Params, Rng } from '@disco/core';
import { initConvTorchvision } from './init.js';

/** BatchNorm epsilon and momentum (PyTorch convention) of a family. */
export interface BnSettings {
  eps: number;
  momentum: number;
}

/**
 * Conv (no bias) + BN + activation, named `<prefix>.0` and `<prefix>.1` (torchvision's
 * `Conv2dNormActivation`), symmetric padding `(k - 1) / 2`.
 * `[n, h, w, in] -> [n, h / stride, w / stride, out]`.
 */
export class ConvNormAct implements Module<tf.Tensor4D, tf.Tensor4D> {
  private readonly conv: Conv2d;
  private readonly bn: BatchNorm;

  constructor(
    prefix: string,
    cfg: { in: number; out: number; kernel: number; stride?: number; depthwise?: boolean },
    private readonly act: Activation,
    bn: BnSettings,
  ) {
    this.conv = new Conv2d(`${prefix}.0`, {
      inChannels: cfg.in,
      outChannels: cfg.out,
      kernelSize: cfg.kernel,
      stride: cfg.stride ?? 1,
      padding: (cfg.kernel - 1) >> 1,
      groups: cfg.depthwise ? cfg.in : 1,
    });
    this.bn = new BatchNorm(`${prefix}.1`, { channels: cfg.out, ...bn });
  }

  init(params: Params, rng: Rng): void {
    initConvTorchvision(this.conv, params, rng);
    this.bn.init(params);
  }

  apply(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    const y = this.bn.apply(params, this.conv.apply(params, x), ctx) as tf.Tensor4D;
    return activate(y, this.act);
  }
}

/**
 * Squeeze-excitation (Hu et al., https://arxiv.org/abs/1709.01507): global average, `fc1`
 * 1x1 conv + `inner` activation, `fc2` 1x1 conv + `gate` activation, channel-wise scale
 * (MobileNetV3: ReLU and hard-sigmoid; EfficientNet: SiLU and sigmoid).
 * `[n, h, w, c]` in and out.
 */
export class SqueezeExcitation implements Module<tf.Tensor4D, tf.Tensor4D> {
  private readonly fc1: Conv2d;
  private readonly fc2: Conv2d;

  constructor(
    prefix: string,
    channels: number,
    squeeze: number,
    private readonly acts: { inner: Activation; gate: Activation },
  ) {
    const fc = { kernelSize: 1, padding: 0, bias: true };
    this.fc1 = new Conv2d(`${prefix}.fc1`, { inChannels: channels, outChannels: squeeze, ...fc });
    this.fc2 = new Conv2d(`${prefix}.fc2`, { inChannels: squeeze, outChannels: channels, ...fc });
  }

  init(params: Params, rng: Rng): void {
    initConvTorchvision(this.fc1, params, rng);
    initConvTorchvision(this.fc2, params, rng);
  }

  apply(params: Params, x: tf.Tensor4D): tf.Tensor4D {
    const squeezed = tf.mean(x, [1, 2], true) as tf.Tensor4D; // [n, 1, 1, c]
    const s = activate(this.fc1.apply(params, squeezed), this.acts.inner);
    return tf.mul(x, activate(this.fc2.apply(params, s), this.acts.gate));
  }
}

/**
 * An inverted residual block's plumbing, shared by MobileNetV3 and EfficientNet: the layers a
 * family's constructor pushes run in order, and the input is added back when `residual`
 * (stride 1 and equal widths). `[n, h, w, c]` in and out.
 */
export abstract class ResidualStack implements Module<tf.Tensor4D, tf.Tensor4D> {
  protected readonly layers: Module<tf.Tensor4D, tf.Tensor4D>[] = [];
  protected abstract readonly residual: boolean;

  init(params: Params, rng: Rng): void {
    for (const layer of this.layers) layer.init(params, rng);
  }

  apply(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    let y = x;
    for (const layer of this.layers) y = layer.apply(params, y, ctx);
    return this.residual ? tf.add(y, x) : y;
  }
}
