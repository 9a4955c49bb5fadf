/**
 * Filling a small tensor (a rearranged filter) from another one's values in JS, without
 * the copies of `dataSync` and `tf.tensor`: on wasm both are views into the backend's
 * heap; on other backends it falls back to those copies.
 */
import { tf } from '../tf.js';

/** The two `BackendWasm` methods used here (a structural type; no import of the class). */
interface HeapBackend {
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
}

function heapBackend(): HeapBackend | null {
  const b = tf.backend() as unknown as Partial<HeapBackend>;
  return typeof b.makeOutput === 'function' && typeof b.typedArrayFromHeap === 'function'
    ? (b as HeapBackend)
    : null;
}

/**
 * A new float32 tensor of `shape` whose values `fill(out, src)` writes, reading the values
 * of the float32 tensor `source`. `out` starts zeroed; neither array may be kept.
 */
export function fillFrom(
  source: tf.Tensor,
  shape: number[],
  fill: (out: Float32Array, src: Float32Array) => void,
): tf.Tensor {
  if (source.dtype !== 'float32') {
    throw new Error(`fillFrom: source must be float32, got ${source.dtype}`);
  }
  const heap = heapBackend();
  if (heap === null) {
    const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
    fill(out, source.dataSync() as Float32Array);
    return tf.tensor(out, shape, 'float32');
  }
  // Allocate first: a growing heap detaches views taken before.
  const info = heap.makeOutput(shape, 'float32');
  const out = heap.typedArrayFromHeap(info);
  out.fill(0);
  fill(out, heap.typedArrayFromHeap(source));
  return tf.engine().makeTensorFromTensorInfo(info);
}
