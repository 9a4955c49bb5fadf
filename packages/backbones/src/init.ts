/**
 * torchvision's convolution init where core's `Conv2d.init` differs from it: PyTorch's
 * kaiming-normal fan-out takes `fan_out = weight.size(0) * kh * kw`, which for a depthwise
 * weight `[channels, 1, kh, kw]` is `channels * kh * kw`; and torchvision's MobileNetV3 sets
 * every conv bias (the squeeze-excitation fc1/fc2) to zero.
 */
import { tf } from '@disco/core';
import type { Conv2d, Params, Rng } from '@disco/core';

/**
 * Creates `conv`'s parameters as torchvision does for MobileNetV3: weight ~ N(0, 2 / fan_out)
 * with PyTorch's fan-out, bias 0.
 */
export function initConvTorchvision(conv: Conv2d, params: Params, rng: Rng): void {
  conv.init(params, rng);
  const { outChannels: co, kernelSize: k } = conv.cfg;
  if (conv.depthwise) {
    // TODO(core): Conv2d.init uses fan_out = (out / groups) k k, so a depthwise weight gets a
    // std sqrt(channels) times too large; redrawn here with PyTorch's fan_out = out k k.
    const weight = params.get(`${conv.name}.weight`);
    const values = rng.normalArray(weight.size, 0, Math.sqrt(2 / (co * k * k)));
    tf.tidy(() => weight.assign(tf.tensor(values, weight.shape)));
  }
  if (conv.cfg.bias) {
    const bias = params.get(`${conv.name}.bias`);
    tf.tidy(() => bias.assign(tf.zerosLike(bias)));
  }
}
