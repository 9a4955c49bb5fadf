/**
 * Geometry shared by the wasm training kernels: reading conv attributes, recovering the
 * forward pass's padding, and running a stride-1 convolution with signed pads (a negative
 * pad crops the output instead of padding the input). Written for DisCo.js from the
 * convolution index algebra; nothing here is specific to one kernel.
 */
import { tf } from '../tf.js';

/** Padding as tfjs's conv ops and kernels accept it. */
export type ConvPad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;

/** Vertical and horizontal numbers, from a scalar or a pair. */
export function pair(name: string, what: string, v: number | [number, number] | undefined) {
  const p: [number, number] = v === undefined ? [1, 1] : typeof v === 'number' ? [v, v] : v;
  if (!p.every((n) => Number.isInteger(n) && n >= 1)) {
    throw new Error(`${name}: ${what} must be positive integers, got ${JSON.stringify(v)}`);
  }
  return p;
}

/** The forward convolution a backprop kernel undoes, as tfjs computes it. */
export interface ForwardGeometry {
  /** Input `[N, H, W, C]` of the forward conv. */
  inShape: [number, number, number, number];
  /** Output height and width of the forward conv. */
  outHeight: number;
  outWidth: number;
  /** Padding of the forward input (top, left; bottom, right as tfjs computed them). */
  top: number;
  left: number;
  bottom: number;
  right: number;
}

/**
 * The forward pass's padding for a conv of `inShape` by `filterShape`, checked against the
 * `dyShape` a backprop kernel received. Throws, naming `name`, on a shape mismatch or NCHW.
 */
export function forwardGeometry(
  name: string,
  inShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  dyShape: number[],
  strides: [number, number],
  dilations: [number, number],
  pad: ConvPad,
  dimRoundingMode: 'floor' | 'round' | 'ceil' | undefined,
  depthwise: boolean,
  dataFormat: string | undefined,
): ForwardGeometry {
  if (dataFormat !== undefined && dataFormat !== 'NHWC') {
    throw new Error(`${name}: only dataFormat 'NHWC' runs on wasm, got '${dataFormat}'`);
  }
  if (strides.some((s) => s > 1) && dilations.some((d) => d > 1)) {
    throw new Error(
      `${name}: strides or dilations must be 1, got strides ${strides} and dilations ${dilations}`,
    );
  }
  const info = tf.backend_util.computeConv2DInfo(
    inShape,
    filterShape,
    strides,
    dilations,
    pad,
    dimRoundingMode,
    depthwise,
  );
  const expected = [inShape[0], info.outHeight, info.outWidth, info.outChannels];
  if (dyShape.length !== 4 || dyShape.some((d, i) => d !== expected[i])) {
    throw new Error(
      `${name}: dy must have shape [${expected}] for input [${inShape}] and filter ` +
        `[${filterShape}], got [${dyShape}]`,
    );
  }
  const { top, left, bottom, right } = info.padInfo;
  return { inShape, outHeight: info.outHeight, outWidth: info.outWidth, top, left, bottom, right };
}

/**
 * A stride-1 convolution (plain or depthwise, with `dilations`) of `x` `[N, H, W, C]` whose
 * four pads may be negative: positive pads go to the conv as explicit padding, negative ones
 * crop the output by as many rows or columns (for stride 1 that equals cropping the input).
 */
export function stride1Conv(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  pads: { top: number; bottom: number; left: number; right: number },
  depthwise: boolean,
  dilations: [number, number] = [1, 1],
): tf.Tensor4D {
  const { top, bottom, left, right } = pads;
  const explicit: tf.backend_util.ExplicitPadding = [
    [0, 0],
    [Math.max(top, 0), Math.max(bottom, 0)],
    [Math.max(left, 0), Math.max(right, 0)],
    [0, 0],
  ];
  const y = depthwise
    ? tf.depthwiseConv2d(x, filter, 1, explicit, 'NHWC', dilations)
    : tf.conv2d(x, filter, 1, explicit, 'NHWC', dilations);
  const cropTop = Math.max(-top, 0);
  const cropLeft = Math.max(-left, 0);
  const height = y.shape[1] - cropTop - Math.max(-bottom, 0);
  const width = y.shape[2] - cropLeft - Math.max(-right, 0);
  if (cropTop === 0 && cropLeft === 0 && height === y.shape[1] && width === y.shape[2]) return y;
  return tf.slice(y, [0, cropTop, cropLeft, 0], [y.shape[0], height, width, y.shape[3]]);
}

/**
 * Builds a kernel function from tensor ops: the ops run on the active backend inside a
 * `tidy`, and the one result tensor is handed to the engine as the kernel's output.
 */
export function kernelFromOps<A>(
  compute: (inputs: Record<string, tf.Tensor>, attrs: A) => tf.Tensor,
): tf.KernelFunc {
  return ({ inputs, attrs }) => {
    const profile = activeProfile();
    const first = profile?.kernels.length ?? 0;
    const out = tf.tidy(() => {
      const tensors: Record<string, tf.Tensor> = {};
      for (const [key, info] of Object.entries(inputs)) {
        if (info === undefined) continue;
        tensors[key] =
          info instanceof tf.Tensor ? info : tf.engine().makeTensorFromTensorInfo(info);
      }
      return compute(tensors, attrs as unknown as A);
    });
    // Under tf.profile, the kernels run inside this one are recorded too (before it): mark
    // them, so a profile can count each millisecond once.
    if (profile) for (const k of profile.kernels.slice(first)) k.nested = true;
    return out;
  };
}

/** One kernel record of tfjs's profiler, with our mark for kernels run inside another. */
export interface ProfiledKernel {
  name: string;
  /** Set when the kernel ran inside one of our kernels (its time is in that kernel's). */
  nested?: boolean;
}

/** The records of the `tf.profile` call in progress, or null when none is. */
function activeProfile(): { kernels: ProfiledKernel[] } | null {
  const state = (
    tf.engine() as unknown as {
      state?: { profiling?: boolean; activeProfile?: { kernels?: ProfiledKernel[] } };
    }
  ).state;
  const kernels = state?.profiling ? state.activeProfile?.kernels : undefined;
  return kernels ? { kernels } : null;
}

/** The attributes every conv backprop kernel receives (NHWC only). */
export interface ConvBackpropAttrs {
  strides: number | [number, number];
  pad: ConvPad;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}
