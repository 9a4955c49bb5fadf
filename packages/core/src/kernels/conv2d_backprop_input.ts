/**
 * `Conv2DBackpropInput` for the wasm backend, replacing its native loop (5-13x a forward
 * conv) with forward convolutions, one per stride phase, and an interleave.
 *
 * dx[n, p, q, c] = sum of dy[n, i, j, o] * w[a, b, c, o] over i*s + a = p + pad. Split the
 * rows p by phase phi = p mod s: the taps a that reach phase phi are a = rho + s*m with
 * rho = (phi + pad) mod s, so each phase is a stride-1 conv of the undilated dy with the
 * flipped sub-filter w[rho::s] (see `phase_filter.ts`). The s*s phase convs together do
 * the forward conv's MACs; a concat and a transpose interleave them. (One conv with
 * s*s*Ci output channels and zero-padded sub-filters measured up to 2x slower on big
 * layers: a 3x3 stride-2 filter needs 16 taps instead of 9.) For stride 1 this is the
 * plain conv of padded dy with the flipped, in/out-swapped filter.
 */
import { tf } from '../tf.js';
import {
  type ConvBackpropAttrs,
  forwardGeometry,
  kernelFromOps,
  pair,
  stride1Conv,
} from './geometry.js';
import { fillFrom } from './heap.js';
import { axisPhases, phaseFilter } from './phase_filter.js';

const NAME = 'Conv2DBackpropInput (wasm)';

interface Attrs extends ConvBackpropAttrs {
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
  const [sh, sw] = strides;
  const rowPhases = axisPhases(kh, sh, g.top, h, g.outHeight);
  const colPhases = axisPhases(kw, sw, g.left, w, g.outWidth);
  // One stride-1 conv per (row, column) phase that some tap reaches: [N, U, V, Ci] each.
  const phases: (tf.Tensor4D | null)[] = [];
  for (const rows of rowPhases) {
    for (const cols of colPhases) {
      if (rows.taps.length === 0 || cols.taps.length === 0) {
        phases.push(null);
        continue;
      }
      const shape = [rows.taps.length, cols.taps.length, filter.shape[3], ci];
      const sub = fillFrom(filter, shape, (out, src) =>
        phaseFilter(src, filter.shape, rows, cols, out),
      ) as tf.Tensor4D;
      const pads = {
        top: rows.padBefore,
        bottom: rows.padAfter,
        left: cols.padBefore,
        right: cols.padAfter,
      };
      phases.push(stride1Conv(dy, sub, pads, false));
    }
  }
  const computed = phases.filter((p): p is tf.Tensor4D => p !== null);
  if (sh === 1 && sw === 1) return computed[0]!;
  const [, u, v] = computed[0]!.shape;
  let grid: tf.Tensor; // [N, U, sh, V, sw, Ci]
  if (computed.length === 1) {
    // One phase holds every tap (a 1x1 strided conv): place it on a grid of zeros.
    const at = phases.findIndex((p) => p !== null);
    const [ph, pw] = [Math.floor(at / sw), at % sw];
    grid = tf.pad(tf.reshape(computed[0]!, [n, u, 1, v, 1, ci]), [
      [0, 0],
      [0, 0],
      [ph, sh - 1 - ph],
      [0, 0],
      [pw, sw - 1 - pw],
      [0, 0],
    ]);
  } else {
    // Phases side by side in channels, then interleaved by a transpose (wasm's
    // DepthToSpace is about 10x slower than its Transpose). Phases without taps are zeros.
    const zeros = computed.length < phases.length ? tf.zeros([n, u, v, ci]) : null;
    const side = tf.concat(
      phases.map((p) => p ?? zeros!),
      3,
    );
    grid = tf.transpose(tf.reshape(side, [n, u, v, sh, sw, ci]), [0, 1, 3, 2, 4, 5]);
  }
  const interleaved = tf.reshape<tf.Rank.R4>(grid, [n, u * sh, v * sw, ci]);
  if (u * sh === h && v * sw === w) return interleaved;
  return tf.slice(interleaved, [0, 0, 0, 0], [n, h, w, ci]);
}

export const conv2dBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropInput,
  backendName: 'wasm',
  kernelFunc: kernelFromOps<Attrs>((inputs, attrs) =>
    conv2dInputGrad(inputs.dy as tf.Tensor4D, inputs.filter as tf.Tensor4D, attrs),
  ),
};
