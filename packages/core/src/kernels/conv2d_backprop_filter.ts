/**
 * `Conv2DBackpropFilter` for the wasm backend, which has none: the filter gradient as one
 * forward convolution, so it runs on XNNPACK's fast conv.
 *
 * dW[a, b, c, o] = sum over n, i, j of xpad[n, i*sh + a, j*sw + b, c] * dy[n, i, j, o].
 * Reading the batch axis of x as channels and the channels as a batch, this is a conv of
 * x^T `[Ci, H, W, N]` by dy^T `[Ho, Wo, N, Co]` used as the filter, with dilation equal to
 * the forward stride. Its output `[Ci, kh', kw', Co]` is cropped to the filter's taps and
 * transposed back to `[kh, kw, Ci, Co]`.
 */
import { tf } from '../tf.js';
import { type ConvPad, forwardGeometry, kernelFromOps, pair } from './geometry.js';

const NAME = 'Conv2DBackpropFilter (wasm)';

interface Attrs {
  strides: number | [number, number];
  pad: ConvPad;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape: [number, number, number, number];
}

/**
 * The gradient of a conv's loss with respect to its filter.
 * @param x forward input `[N, H, W, Ci]`
 * @param dy gradient of the forward output `[N, Ho, Wo, Co]`
 * @returns `[kh, kw, Ci, Co]` (`filterShape`)
 */
export function conv2dFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, attrs: Attrs): tf.Tensor4D {
  const [kh, kw, ci, co] = attrs.filterShape;
  const strides = pair(NAME, 'strides', attrs.strides);
  if (x.shape[3] !== ci) {
    throw new Error(`${NAME}: x has ${x.shape[3]} channels, filterShape [${attrs.filterShape}]`);
  }
  const g = forwardGeometry(
    NAME,
    x.shape,
    attrs.filterShape,
    dy.shape,
    strides,
    [1, 1],
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    attrs.dataFormat,
  );
  // Rows of xpad the forward conv read: (Ho - 1) * sh + kh, starting at -top.
  const needH = (g.outHeight - 1) * strides[0] + kh;
  const needW = (g.outWidth - 1) * strides[1] + kw;
  const pads: tf.backend_util.ExplicitPadding = [
    [0, 0],
    [g.top, Math.max(needH - x.shape[1] - g.top, 0)],
    [g.left, Math.max(needW - x.shape[2] - g.left, 0)],
    [0, 0],
  ];
  const xT = tf.transpose(x, [3, 1, 2, 0]); // [Ci, H, W, N]
  const dyT = tf.transpose(dy, [1, 2, 0, 3]); // [Ho, Wo, N, Co]
  const full = tf.conv2d(xT, dyT, 1, pads, 'NHWC', strides); // [Ci, >=kh, >=kw, Co]
  const taps =
    full.shape[1] === kh && full.shape[2] === kw
      ? full
      : tf.slice(full, [0, 0, 0, 0], [ci, kh, kw, co]);
  return tf.transpose(taps, [1, 2, 0, 3]);
}

export const conv2dBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: kernelFromOps<Attrs>((inputs, attrs) =>
    conv2dFilterGrad(inputs.x as tf.Tensor4D, inputs.dy as tf.Tensor4D, attrs),
  ),
};
