import { registerWasmTrainingKernels, tf } from '../packages/core/src/index.js';
await tf.setBackend('wasm');
registerWasmTrainingKernels();
const which = process.argv[2] ?? 'l2';
const cases: Record<string, any> = {
  l2: { n: 32, hw: 32, ci: 64, co: 128, k: 3, s: 2 },
  l1: { n: 32, hw: 32, ci: 64, co: 64, k: 3, s: 1 },
  l3: { n: 32, hw: 8, ci: 256, co: 256, k: 3, s: 1 },
  l4: { n: 32, hw: 4, ci: 512, co: 512, k: 3, s: 1 },
  stem: { n: 32, hw: 32, ci: 3, co: 64, k: 3, s: 1 },
};
const c = cases[which];
const x = tf.randomNormal([c.n, c.hw, c.hw, c.ci]) as tf.Tensor4D;
const f = tf.randomNormal([c.k, c.k, c.ci, c.co]) as tf.Tensor4D;
const y = tf.conv2d(x, f, c.s, 'same');
const dy = tf.randomNormal(y.shape) as tf.Tensor4D;
const [, ho, wo] = dy.shape;
const kk = c.k * c.k;
const oneHot = (() => {
  const v = new Float32Array(kk * c.ci * kk);
  for (let t = 0; t < kk; t++) for (let ch = 0; ch < c.ci; ch++) v[(t * c.ci + ch) * kk + t] = 1;
  return tf.tensor4d(v, [c.k, c.k, c.ci, kk]);
})();
const oneHots = [...Array(kk).keys()].map((t) => {
  const v = new Float32Array(kk * c.ci);
  for (let ch = 0; ch < c.ci; ch++) v[t * c.ci + ch] = 1;
  return tf.tensor4d(v, [c.k, c.k, c.ci, 1]);
});
const attrs = { strides: c.s, pad: 'same', dataFormat: 'NHWC', filterShape: f.shape };
const variants: Record<string, () => tf.Tensor> = {
  current: () =>
    tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs as any) as tf.Tensor,
  dwMult: () =>
    tf.tidy(() => {
      const p = tf.depthwiseConv2d(x, oneHot, c.s, 'same'); // [N,Ho,Wo,Ci*kk]
      const dyT = tf.transpose(tf.reshape(dy, [-1, c.co]));
      const r = tf.matMul(dyT, tf.reshape(p, [-1, c.ci * kk])); // [Co, Ci*kk]
      return tf.transpose(tf.reshape(r, [c.co, c.ci, c.k, c.k]), [2, 3, 1, 0]);
    }),
  dw9concat: () =>
    tf.tidy(() => {
      const p = tf.concat(
        oneHots.map((h) => tf.depthwiseConv2d(x, h, c.s, 'same')),
        3,
      ); // [N,Ho,Wo,kk*Ci]
      const dyT = tf.transpose(tf.reshape(dy, [-1, c.co]));
      const r = tf.matMul(dyT, tf.reshape(p, [-1, c.ci * kk])); // [Co, kk*Ci]
      return tf.transpose(tf.reshape(r, [c.co, c.k, c.k, c.ci]), [1, 2, 3, 0]);
    }),
};
const ref = variants.current!().dataSync();
for (const [name, v] of Object.entries(variants)) {
  const got = v().dataSync();
  let e = 0,
    s = 0;
  for (let i = 0; i < ref.length; i++) {
    e = Math.max(e, Math.abs(got[i]! - ref[i]!));
    s = Math.max(s, Math.abs(ref[i]!));
  }
  console.log(name, 'rel err', (e / s).toExponential(1));
}
const times: Record<string, number[]> = {};
const fwd = () => tf.conv2d(x, f, c.s, 'same');
for (let r = 0; r < 5; r++) {
  for (const [name, v] of Object.entries({ fwd, ...variants })) {
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
