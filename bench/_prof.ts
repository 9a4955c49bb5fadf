import { registerWasmTrainingKernels, tf } from '../packages/core/src/index.js';
await tf.setBackend('wasm');
registerWasmTrainingKernels();
const only = process.argv[2] ?? '';
const cases = [
  { name: 'l2', n: 32, hw: 32, ci: 64, co: 128, k: 3, s: 2, dw: false },
  { name: 'down', n: 32, hw: 32, ci: 64, co: 128, k: 1, s: 2, dw: false },
  { name: 'l1', n: 32, hw: 32, ci: 64, co: 64, k: 3, s: 1, dw: false },
  { name: 'stem', n: 32, hw: 32, ci: 3, co: 64, k: 3, s: 1, dw: false },
  { name: 'dw16', n: 32, hw: 32, ci: 16, co: 16, k: 3, s: 2, dw: true },
  { name: 'dw72', n: 32, hw: 16, ci: 72, co: 72, k: 3, s: 2, dw: true },
  { name: 'dw88', n: 32, hw: 8, ci: 88, co: 88, k: 3, s: 1, dw: true },
  { name: 'dw240', n: 32, hw: 4, ci: 240, co: 240, k: 5, s: 1, dw: true },
];
for (const c of cases) {
  if (!c.name.startsWith(only)) continue;
  const x = tf.randomNormal([c.n, c.hw, c.hw, c.ci]) as tf.Tensor4D;
  const f = tf.randomNormal([c.k, c.k, c.ci, c.dw ? 1 : c.co]) as tf.Tensor4D;
  const y = c.dw ? tf.depthwiseConv2d(x, f, c.s, 'same') : tf.conv2d(x, f, c.s, 'same');
  const dy = tf.randomNormal(y.shape) as tf.Tensor4D;
  const b = { strides: c.s, pad: 'same', dataFormat: 'NHWC', dilations: 1 };
  const list = c.dw
    ? [
        ['DepthwiseConv2dNativeBackpropInput', { dy, filter: f }, { ...b, inputShape: x.shape }],
        ['DepthwiseConv2dNativeBackpropFilter', { x, dy }, { ...b, filterShape: f.shape }],
      ]
    : [
        ['Conv2DBackpropInput', { dy, filter: f }, { ...b, inputShape: x.shape }],
        ['Conv2DBackpropFilter', { x, dy }, { ...b, filterShape: f.shape }],
      ];
  for (const [k, inputs, attrs] of list as any) {
    tf.dispose(tf.engine().runKernel(k, inputs, attrs) as tf.Tensor);
    for (let rep = 0; rep < 2; rep++) {
      const p = await tf.profile(() => {
        const o = tf.engine().runKernel(k, inputs, attrs) as tf.Tensor;
        o.dataSync();
        o.dispose();
      });
      const rows = await Promise.all(
        p.kernels.map(
          async (kk: any) =>
            `${kk.name}:${Number(await kk.kernelTimeMs).toFixed(1)}[${kk.inputShapes.map((s: any) => s?.join('x')).join(',')}]`,
        ),
      );
      console.log(c.name, k.replace('DepthwiseConv2dNative', 'DW'), rows.join('  '));
    }
  }
  tf.dispose([x, f, y, dy]);
}
