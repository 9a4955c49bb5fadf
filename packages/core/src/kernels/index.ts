/**
 * Gradient kernels that tfjs's `wasm` backend lacks or runs slowly, each expressed through
 * fast forward kernels. See the individual files for the formulation of each.
 */

let registered = false;

/** Registers DisCo's wasm training kernels once (idempotent). */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  registered = true;
  // TODO(kernels): register Conv2DBackpropFilter, Conv2DBackpropInput,
  // DepthwiseConv2dNativeBackpropFilter, DepthwiseConv2dNativeBackpropInput.
}
