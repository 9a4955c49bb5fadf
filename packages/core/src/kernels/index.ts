/**
 * Gradient kernels that tfjs's `wasm` backend lacks or runs slowly, each expressed through
 * fast forward kernels (XNNPACK convs) of the same backend. See the individual files for
 * the formulation of each.
 */
import { tf } from '../tf.js';
import { conv2dBackpropFilterConfig } from './conv2d_backprop_filter.js';
import { conv2dBackpropInputConfig } from './conv2d_backprop_input.js';
import { depthwiseBackpropFilterConfig } from './depthwise_backprop_filter.js';
import { depthwiseBackpropInputConfig } from './depthwise_backprop_input.js';

export { conv2dFilterGrad } from './conv2d_backprop_filter.js';
export { conv2dInputGrad } from './conv2d_backprop_input.js';
export { depthwiseFilterGrad } from './depthwise_backprop_filter.js';
export { depthwiseInputGrad } from './depthwise_backprop_input.js';

/** The kernels this module registers for `wasm`, by tfjs kernel name. */
export const WASM_TRAINING_KERNELS: readonly string[] = [
  tf.Conv2DBackpropFilter,
  tf.Conv2DBackpropInput,
  tf.DepthwiseConv2dNativeBackpropFilter,
  tf.DepthwiseConv2dNativeBackpropInput,
];

let native: tf.KernelConfig | undefined;
let registered = false;

/**
 * Registers DisCo's wasm training kernels once (idempotent). Replaces the backend's own
 * `Conv2DBackpropInput`, which stays reachable through `nativeWasmConv2DBackpropInput`.
 */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  registered = true;
  native = tf.getKernel(tf.Conv2DBackpropInput, 'wasm');
  for (const config of [
    conv2dBackpropFilterConfig,
    conv2dBackpropInputConfig,
    depthwiseBackpropFilterConfig,
    depthwiseBackpropInputConfig,
  ]) {
    if (tf.getKernel(config.kernelName, 'wasm') !== undefined) {
      tf.unregisterKernel(config.kernelName, 'wasm');
    }
    tf.registerKernel(config);
  }
}

/**
 * The wasm backend's own `Conv2DBackpropInput` kernel as shipped (a plain loop), kept for
 * benchmarks; `undefined` before `registerWasmTrainingKernels` ran. Its `kernelFunc` works
 * only if the wasm backend was initialised before that call (which runs its setup).
 */
export function nativeWasmConv2DBackpropInput(): tf.KernelConfig | undefined {
  return native;
}
