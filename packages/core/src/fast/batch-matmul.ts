/**
 * `BatchMatMul` for the wasm backend without its slow transposed paths: wasm multiplies
 * `a^T b` at ~0.7 GFLOP/s and `a b^T` at ~2 GFLOP/s against ~26 GFLOP/s for the plain
 * layout (measured, see shared/reference/PERF.md). Every Dense-layer gradient and the
 * InfoNCE gradient against the queue hit those paths. This kernel transposes the operand
 * explicitly (a fast memory pass) and calls the backend's own plain kernel; for `a b^T` with
 * a large `b` it transposes `a` and the product instead (3-5x faster on the Dense and queue
 * gradients, bit-identical).
 */
import { tf } from '../tf.js';

let original: tf.KernelConfig | undefined;

function transposeInfo(info: tf.TensorInfo, backend: tf.KernelBackend): tf.TensorInfo {
  const transpose = tf.getKernel(tf.Transpose, 'wasm');
  if (!transpose) throw new Error('BatchMatMul (wasm): the backend has no Transpose kernel');
  const rank = info.shape.length;
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
  return transpose.kernelFunc({
    inputs: { x: info } as unknown as tf.NamedTensorInfoMap,
    attrs: { perm },
    backend,
  }) as tf.TensorInfo;
}

const size = (shape: number[]) => shape.reduce((x, y) => x * y, 1);

/**
 * Whether `a b^T` is cheaper as `(b a^T)^T`: the right operand of the plain kernel is
 * repacked at every call, so transposing and repacking a large `b` (a Dense weight in its
 * input gradient, the queue in InfoNCE's) costs more than transposing `a` and the product.
 */
function swapPays(a: number[], b: number[]): boolean {
  const out = size(a.slice(0, -1)) * b[b.length - 2]!;
  return size(b) > size(a) + out;
}

const batchMatMulConfig: tf.KernelConfig = {
  kernelName: tf.BatchMatMul,
  backendName: 'wasm',
  kernelFunc: ({ inputs, attrs, backend: kb }) => {
    const backend = kb as tf.KernelBackend;
    const { a, b } = inputs as unknown as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = attrs as unknown as {
      transposeA: boolean;
      transposeB: boolean;
    };
    if (!transposeA && !transposeB) return original!.kernelFunc({ inputs, attrs, backend: kb });
    if (!transposeA && swapPays(a.shape, b.shape)) {
      // a b^T = (b a^T)^T: transpose the small a and the small product, not the large b.
      const at = transposeInfo(a, backend);
      const product = original!.kernelFunc({
        inputs: { a: b, b: at } as unknown as tf.NamedTensorInfoMap,
        attrs: { ...attrs, transposeA: false, transposeB: false },
        backend,
      }) as tf.TensorInfo;
      const out = transposeInfo(product, backend);
      backend.disposeData(at.dataId);
      backend.disposeData(product.dataId);
      return out;
    }
    const at = transposeA ? transposeInfo(a, backend) : a;
    const bt = transposeB ? transposeInfo(b, backend) : b;
    const out = original!.kernelFunc({
      inputs: { a: at, b: bt } as unknown as tf.NamedTensorInfoMap,
      attrs: { ...attrs, transposeA: false, transposeB: false },
      backend,
    });
    if (transposeA) backend.disposeData(at.dataId);
    if (transposeB) backend.disposeData(bt.dataId);
    return out;
  },
};

/** Replaces wasm's BatchMatMul with the explicit-transpose version (idempotent). */
export function registerFastBatchMatMul(): void {
  if (original) return;
  original = tf.getKernel(tf.BatchMatMul, 'wasm');
  if (!original) throw new Error('registerFastBatchMatMul: wasm has no BatchMatMul kernel');
  tf.unregisterKernel(tf.BatchMatMul, 'wasm');
  // The backend binds its native function in setupFunc when it initialises: keep it.
  tf.registerKernel({ ...batchMatMulConfig, setupFunc: original.setupFunc });
}
