/**
 * `DepthwiseConv2dNativeBackpropFilter` for the wasm backend, which has none: one depthwise
 * conv with the batch folded into the channels.
 *
 * dW[a, b, c, m] = sum of xpad[n, i*sh + a*dh, j*sw + b*dw, c] * dy[n, i, j, c*M + m] over
 * n, i, j. With x^T `[1, H, W, N*C]` and dy^T `[Ho, Wo, N*C, M]` as the filter, a depthwise
 * conv with dilation sh and stride dh gives, per (n, c), the sum over i, j; its output
 * `[1, kh', kw', N*C*M]` is cropped to the taps and summed over n.
 */
import { tf } from '../tf.js';
import { type ConvPad, forwardGeometry, kernelFromOps, pair } from './geometry.js';

const NAME = 'DepthwiseConv2dNativeBackpropFilter (wasm)';

interface Attrs {
  strides: number | [number, number];
  dilations?: number | [number, number];
  pad: ConvPad;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape: [number, number, number, number];
}

/**
 * The gradient of a depthwise conv's loss with respect to its filter.
 * @param x forward input `[N, H, W, C]`
 * @param dy gradient of the forward output `[N, Ho, Wo, C*M]`
 * @returns `[kh, kw, C, M]` (`filterShape`)
 */
export function depthwiseFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, attrs: Attrs): tf.Tensor4D {
  const [kh, kw, c, m] = attrs.filterShape;
  const [n, h, w, xc] = x.shape;
  if (xc !== c) {
    throw new Error(`${NAME}: x has ${xc} channels, filterShape [${attrs.filterShape}]`);
  }
  const strides = pair(NAME, 'strides', attrs.strides);
  const dilations = pair(NAME, 'dilations', attrs.dilations);
  const g = forwardGeometry(
    NAME,
    x.shape,
    attrs.filterShape,
    dy.shape,
    strides,
    dilations,
    attrs.pad,
    attrs.dimRoundingMode,
    true,
    undefined,
  );
  const needH = (g.outHeight - 1) * strides[0] + (kh - 1) * dilations[0] + 1;
  const needW = (g.outWidth - 1) * strides[1] + (kw - 1) * dilations[1] + 1;
  const pads: tf.backend_util.ExplicitPadding = [
    [0, 0],
    [g.top, Math.max(needH - h - g.top, 0)],
    [g.left, Math.max(needW - w - g.left, 0)],
    [0, 0],
  ];
  const folded: tf.Tensor4D =
    n === 1 ? x : tf.reshape<tf.Rank.R4>(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, n * c]);
  const [, ho, wo] = dy.shape;
  const filter = tf.reshape<tf.Rank.R4>(n === 1 ? dy : tf.transpose(dy, [1, 2, 0, 3]), [
    ho,
    wo,
    n * c,
    m,
  ]);
  const full = tf.depthwiseConv2d(folded, filter, dilations, pads, 'NHWC', strides);
  const taps =
    full.shape[1] === kh && full.shape[2] === kw
      ? full
      : tf.slice(full, [0, 0, 0, 0], [1, kh, kw, n * c * m]);
  const perImage = tf.reshape(taps, [kh, kw, n, c * m]);
  return tf.reshape(n === 1 ? perImage : tf.sum(perImage, 2), [kh, kw, c, m]);
}

export const depthwiseBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropFilter,
  backendName: 'wasm',
  kernelFunc: kernelFromOps<Attrs>((inputs, attrs) =>
    depthwiseFilterGrad(inputs.x as tf.Tensor4D, inputs.dy as tf.Tensor4D, attrs),
  ),
};
