import { registerWasmTrainingKernels, tf } from '../packages/core/src/index.js';
await tf.setBackend('wasm');
registerWasmTrainingKernels();
const which = process.argv[2] ?? 'l1';
const cases: Record<string, any> = {
  l1: { n: 32, hw: 32, ci: 64, co: 64, k: 3, s: 1 },
  l1b64: { n: 64, hw: 32, ci: 64, co: 64, k: 3, s: 1 },
  l4: { n: 32, hw: 4, ci: 512, co: 512, k: 3, s: 1 },
  l2: { n: 32, hw: 32, ci: 64, co: 128, k: 3, s: 2 },
};
const c = cases[which];
const x = tf.randomNormal([c.n, c.hw, c.hw, c.ci]) as tf.Tensor4D;
const f = tf.randomNormal([c.k, c.k, c.ci, c.co]) as tf.Tensor4D;
const y = tf.conv2d(x, f, c.s, 'same');
const dy = tf.randomNormal(y.shape) as tf.Tensor4D;
const attrs = { strides: c.s, pad: 'same', dataFormat: 'NHWC', filterShape: f.shape };
const run = (xx: tf.Tensor, dd: tf.Tensor) =>
  tf
    .engine()
    .runKernel('Conv2DBackpropFilter', { x: xx, dy: dd }, { ...attrs } as any) as tf.Tensor;
const chunked = (parts: number) => () =>
  tf.tidy(() => {
    const xs = tf.split(x, parts, 0),
      ds = tf.split(dy, parts, 0);
    return tf.addN(xs.map((xx, i) => run(xx, ds[i]!)));
  });
const xT = tf.transpose(x, [3, 1, 2, 0]);
const dyT = tf.transpose(dy, [1, 2, 0, 3]);
const variants: Record<string, () => tf.Tensor> = {
  fwd: () => tf.conv2d(x, f, c.s, 'same'),
  current: () => run(x, dy),
  convOnly: () =>
    tf.conv2d(
      xT as tf.Tensor4D,
      dyT as tf.Tensor4D,
      1,
      [
        [0, 0],
        [1, 1],
        [1, 1],
        [0, 0],
      ],
      'NHWC',
      c.s,
    ),
  chunk2: chunked(2),
  chunk4: chunked(4),
};
const times: Record<string, number[]> = {};
for (let r = 0; r < 5; r++) {
  for (const [name, v] of Object.entries(variants)) {
    const t0 = performance.now();
    const o = v();
    o.dataSync();
    (times[name] ??= []).push(performance.now() - t0);
    o.dispose();
  }
}
for (const [name, t] of Object.entries(times))
  console.log(
    which,
    name.padEnd(12),
    t.sort((a, b) => a - b)[2]!.toFixed(1),
    'ms  min',
    t[0]!.toFixed(1),
  );
