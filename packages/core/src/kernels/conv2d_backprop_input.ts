/**
 * `Conv2DBackpropInput` for the wasm backend, replacing its native loop (5-13x a forward
 * conv) with one forward convolution plus an interleave.
 *
 * dx[n, p, q, c] = sum of dy[n, i, j, o] * w[a, b, c, o] over i*s + a = p + pad. Split the
 * rows p by phase phi = p mod s: the taps a that reach phase phi are a = rho + s*m with
 * rho = (phi + pad) mod s, so each phase is a stride-1 conv of the undilated dy with the
 * flipped sub-filter w[rho::s] (see `phase_filter.ts`). All s*s phases run as one conv with
 * s*s*Ci output channels, and a depth-to-space interleaves them. For stride 1 this is the
 * plain conv of padded dy with the flipped, in/out-swapped filter.
 */
import { tf } from '../tf.js';
import { type ConvPad, forwardGeometry, kernelFromOps, pair, stride1Conv } from './geometry.js';
import { phaseFilter, phasePlan } from './phase_filter.js';

const NAME = 'Conv2DBackpropInput (wasm)';

interface Attrs {
  strides: number | [number, number];
  pad: ConvPad;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  inputShape: [number, number, number, number];
}

/**
 * The gradient of a conv's loss with respect to its input.
 * @param dy gradient of the forward output `[N, Ho, Wo, Co]`
 * @param filter forward filter `[kh, kw, Ci, Co]`
 * @returns `[N, H, W, Ci]` (`inputShape`)
 */
export function conv2dInputGrad(dy: tf.Tensor4D, filter: tf.Tensor4D, attrs: Attrs): tf.Tensor4D {
  const [n, h, w, ci] = attrs.inputShape;
  const [kh, kw, fci] = filter.shape;
  if (fci !== ci) {
    throw new Error(
      `${NAME}: filter [${filter.shape}] does not fit inputShape [${attrs.inputShape}]`,
    );
  }
  const strides = pair(NAME, 'strides', attrs.strides);
  const g = forwardGeometry(
    NAME,
    attrs.inputShape,
    filter.shape,
    dy.shape,
    strides,
    [1, 1],
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    attrs.dataFormat,
  );
  const rows = phasePlan(kh, strides[0], g.top, h, g.outHeight);
  const cols = phasePlan(kw, strides[1], g.left, w, g.outWidth);
  const values = filter.dataSync() as Float32Array;
  const combined = phaseFilter(values, filter.shape, rows, cols); // [Lh, Lw, Co, sh*sw*Ci]
  const phases = stride1Conv(
    dy,
    combined,
    { top: rows.padBefore, bottom: rows.padAfter, left: cols.padBefore, right: cols.padAfter },
    false,
  ); // [N, U, V, sh*sw*Ci]
  const [sh, sw] = strides;
  if (sh === 1 && sw === 1) return phases;
  const [, u, v] = phases.shape;
  const interleaved =
    sh === sw
      ? tf.depthToSpace(phases, sh, 'NHWC')
      : tf.reshape(tf.transpose(tf.reshape(phases, [n, u, v, sh, sw, ci]), [0, 1, 3, 2, 4, 5]), [
          n,
          u * sh,
          v * sw,
          ci,
        ]);
  if (u * sh === h && v * sw === w) return interleaved as tf.Tensor4D;
  return tf.slice(interleaved as tf.Tensor4D, [0, 0, 0, 0], [n, h, w, ci]);
}

export const conv2dBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropInput,
  backendName: 'wasm',
  kernelFunc: kernelFromOps<Attrs>((inputs, attrs) =>
    conv2dInputGrad(inputs.dy as tf.Tensor4D, inputs.filter as tf.Tensor4D, attrs),
  ),
};
