// Started by wasm-threads.test.ts in a fresh process (a backend starts once per process):
// starts wasm on argv[2] threads, runs a seeded conv forward and its gradients (our
// Conv2DBackpropFilter / Input kernels) and a matMul, and prints the threads and the hashes of the results.
import { createHash } from 'node:crypto';
import { initBackend, tf, wasmThreads } from '../src/index.js';

const threads = Number(process.argv[2]);
await initBackend({ backend: 'wasm', threads });
const x = tf.randomNormal([8, 17, 17, 24], 0, 1, 'float32', 1) as tf.Tensor4D;
const w = tf.randomNormal([3, 3, 24, 32], 0, 1, 'float32', 2) as tf.Tensor4D;
const loss = (a: tf.Tensor, b: tf.Tensor) =>
  tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same')));
const [dx, dw] = tf.grads(loss)([x, w]);
const y = tf.conv2d(x, w, 1, 'same');
const m = tf.matMul(tf.reshape(x, [-1, 24]), tf.randomNormal([24, 40], 0, 1, 'float32', 3));
// sha256 of the float32 bytes: equal hashes are bit-identical tensors.
const bytes = (t: tf.Tensor) =>
  createHash('sha256')
    .update(t.dataSync() as Float32Array)
    .digest('hex');
process.stdout.write(
  `${JSON.stringify({
    backend: tf.getBackend(),
    threads: wasmThreads(),
    y: bytes(y),
    dx: bytes(dx!),
    dw: bytes(dw!),
    matmul: bytes(m),
    ySum: tf.sum(y).dataSync()[0],
  })}\n`,
);
