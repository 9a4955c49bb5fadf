/**
 * `DepthwiseConv2dNativeBackpropInput` for the wasm backend, which has none: a stride-1
 * depthwise conv of the zero-dilated dy with the spatially flipped filter.
 *
 * dx[n, p, q, c] = sum of dy[n, i, j, c*M + m] * w[a, b, c, m] over i*sh + a*dh = p + pad.
 * Spreading dy onto a grid with sh - 1 zeros between rows (dyD[i*sh] = dy[i]) makes this a
 * correlation of dyD, padded by (kh - 1)*dh - pad in front, with w flipped and dilated by dh.
 * With a channel multiplier M > 1 the conv runs per dy channel and the M copies are summed.
 * (A phase split, as for plain convs, loses here: the compute is tiny and the interleave
 * dominates; see PERF.md.)
 */
import { tf } from '../tf.js';
import { fillFrom } from './heap.js';
import { type ConvPad, forwardGeometry, kernelFromOps, pair, stride1Conv } from './geometry.js';

const NAME = 'DepthwiseConv2dNativeBackpropInput (wasm)';

interface Attrs {
  strides: number | [number, number];
  dilations?: number | [number, number];
  pad: ConvPad;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  inputShape: [number, number, number, number];
}

/**
 * `[N, Ho, Wo, C]` to `[N, Ho*sh, Wo*sw, C]` with dy at rows i*sh, columns j*sw and zeros
 * between (the trailing sh - 1 rows and sw - 1 columns are zeros too).
 */
export function zeroDilate(dy: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  if (sh === 1 && sw === 1) return dy;
  const [n, ho, wo, c] = dy.shape;
  const spread = tf.pad(tf.reshape(dy, [n, ho, 1, wo, 1, c]), [
    [0, 0],
    [0, 0],
    [0, sh - 1],
    [0, 0],
    [0, sw - 1],
    [0, 0],
  ]);
  return tf.reshape(spread, [n, ho * sh, wo * sw, c]);
}

/**
 * A depthwise filter `[kh, kw, C, M]` flipped in both spatial axes and laid out as a
 * multiplier-1 filter `[kh, kw, C*M, 1]`.
 */
export function flippedDepthwiseFilter(filter: tf.Tensor4D): tf.Tensor4D {
  const [kh, kw, c, m] = filter.shape;
  const plane = c * m;
  return fillFrom(filter, [kh, kw, plane, 1], (out, w) => {
    for (let a = 0; a < kh; a++) {
      for (let b = 0; b < kw; b++) {
        const src = (a * kw + b) * plane;
        out.set(w.subarray(src, src + plane), ((kh - 1 - a) * kw + (kw - 1 - b)) * plane);
      }
    }
  }) as tf.Tensor4D;
}

/**
 * The gradient of a depthwise conv's loss with respect to its input.
 * @param dy gradient of the forward output `[N, Ho, Wo, C*M]`
 * @param filter forward filter `[kh, kw, C, M]`
 * @returns `[N, H, W, C]` (`inputShape`)
 */
export function depthwiseInputGrad(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  attrs: Attrs,
): tf.Tensor4D {
  const [n, h, w, c] = attrs.inputShape;
  const [kh, kw, fc, m] = filter.shape;
  if (fc !== c) {
    throw new Error(
      `${NAME}: filter [${filter.shape}] does not fit inputShape [${attrs.inputShape}]`,
    );
  }
  const strides = pair(NAME, 'strides', attrs.strides);
  const dilations = pair(NAME, 'dilations', attrs.dilations);
  const g = forwardGeometry(
    NAME,
    attrs.inputShape,
    filter.shape,
    dy.shape,
    strides,
    dilations,
    attrs.pad,
    attrs.dimRoundingMode,
    true,
    undefined,
  );
  const [sh, sw] = strides;
  const [dh, dw] = dilations;
  const spread = zeroDilate(dy, sh, sw); // [N, Ho*sh, Wo*sw, C*M]
  const pads = {
    top: (kh - 1) * dh - g.top,
    bottom: h - 1 + g.top - (g.outHeight * sh - 1),
    left: (kw - 1) * dw - g.left,
    right: w - 1 + g.left - (g.outWidth * sw - 1),
  };
  const dx = stride1Conv(spread, flippedDepthwiseFilter(filter), pads, true, dilations);
  if (m === 1) return dx;
  return tf.sum(tf.reshape(dx, [n, h, w, c, m]), 4);
}

export const depthwiseBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropInput,
  backendName: 'wasm',
  kernelFunc: kernelFromOps<Attrs>((inputs, attrs) =>
    depthwiseInputGrad(inputs.dy as tf.Tensor4D, inputs.filter as tf.Tensor4D, attrs),
  ),
};
