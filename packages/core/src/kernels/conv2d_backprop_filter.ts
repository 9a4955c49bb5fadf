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
import { type ConvBackpropAttrs, forwardGeometry, kernelFromOps, pair } from './geometry.js';

const NAME = 'Conv2DBackpropFilter (wasm)';

interface Attrs extends ConvBackpropAttrs {
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
  const [, h, w] = x.shape;
  const unpadded =
    g.top === 0 &&
    g.left === 0 &&
    Math.ceil(h / strides[0]) === g.outHeight &&
    Math.ceil(w / strides[1]) === g.outWidth;
  if (kh === 1 && kw === 1 && unpadded) {
    return pointwiseFilterGrad(x, dy, strides, g.outHeight, g.outWidth);
  }
  // Rows of xpad the forward conv read: (Ho - 1) * sh + kh, starting at -top.
  const needH = (g.outHeight - 1) * strides[0] + kh;
  const needW = (g.outWidth - 1) * strides[1] + kw;
  const pads: tf.backend_util.ExplicitPadding = [
    [0, 0],
    [g.top, Math.max(needH - h - g.top, 0)],
    [g.left, Math.max(needW - w - g.left, 0)],
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

/**
 * A 1x1 conv without padding: dW = x_s^T dy over the N*Ho*Wo pixels, where x_s is x at the
 * strided positions; one plain matmul after an explicit transpose (wasm's transposed matmuls
 * are 10-30x slower). The plain kernel repacks its right operand at every call, at about a
 * third of the speed of a transpose, so the narrower of x_s and dy goes on the right:
 * (dy^T x_s)^T when Ci <= Co (2-8x faster on MobileNet's expansions), x_s^T dy otherwise.
 */
function pointwiseFilterGrad(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  [sh, sw]: [number, number],
  ho: number,
  wo: number,
): tf.Tensor4D {
  const [n, , , ci] = x.shape;
  const co = dy.shape[3];
  // The strided pixels of x, picked by a strided 1x1 depthwise conv with a filter of ones
  // (exact, and far faster on wasm than its StridedSlice or a 6-D Slice).
  const xs: tf.Tensor4D =
    sh > 1 || sw > 1
      ? tf.depthwiseConv2d(x, tf.ones<tf.Rank.R4>([1, 1, ci, 1]), [sh, sw], 'valid')
      : x;
  const k = n * ho * wo;
  const x2 = tf.reshape(xs, [k, ci]);
  const dy2 = tf.reshape(dy, [k, co]);
  const dw =
    ci <= co ? tf.transpose(tf.matMul(tf.transpose(dy2), x2)) : tf.matMul(tf.transpose(x2), dy2);
  return tf.reshape(dw, [1, 1, ci, co]);
}

export const conv2dBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: kernelFromOps<Attrs>((inputs, attrs) =>
    conv2dFilterGrad(inputs.x as tf.Tensor4D, inputs.dy as tf.Tensor4D, attrs),
  ),
};
