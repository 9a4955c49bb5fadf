import { registerWasmTrainingKernels, tf } from '../packages/core/src/index.js';
registerWasmTrainingKernels();
await tf.setBackend('wasm');
const heap = () => ((tf.backend() as any).wasm.HEAPU8.length / 2 ** 20).toFixed(0);
const x = tf.randomNormal([8, 16, 16, 32]) as tf.Tensor4D;
const w1 = tf.randomNormal([3, 3, 32, 64]) as tf.Tensor4D;
const w2 = tf.randomNormal([3, 3, 64, 1]) as tf.Tensor4D;
const w3 = tf.randomNormal([1, 1, 64, 64]) as tf.Tensor4D;
const step = () => {
  const g = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
    const h = tf.relu(tf.conv2d(x, a as tf.Tensor4D, 2, 'same'));
    const d = tf.depthwiseConv2d(h, b as tf.Tensor4D, 2, 'same');
    return tf.sum(tf.square(tf.conv2d(d, c as tf.Tensor4D, 1, 'same')));
  })([w1.add(0), w2.add(0), w3.add(0)]);
  g.forEach((t) => t.dataSync());
  tf.dispose(g);
};
for (let i = 0; i < 400; i++) {
  tf.tidy(step);
  if (i % 100 === 0) console.log(i, 'heap MB', heap(), 'tensors', tf.memory().numTensors);
}
console.log('end heap MB', heap(), 'tensors', tf.memory().numTensors);
