import { registerWasmTrainingKernels, tf } from '../packages/core/src/index.js';
import { phasePlan, phaseFilter, activePhases } from '../packages/core/src/kernels/phase_filter.js';
import { stride1Conv } from '../packages/core/src/kernels/geometry.js';
await tf.setBackend('wasm');
registerWasmTrainingKernels();
const which = process.argv[2] ?? 'l2';
const cases: Record<string, any> = {
  l2: { n: 32, hw: 32, ci: 64, co: 128, k: 3, s: 2 },
  l2b: { n: 32, hw: 16, ci: 128, co: 256, k: 3, s: 2 },
  mb: { n: 32, hw: 32, ci: 16, co: 24, k: 3, s: 2 },
};
const c = cases[which];
const x = tf.randomNormal([c.n, c.hw, c.hw, c.ci]) as tf.Tensor4D;
const f = tf.randomNormal([c.k, c.k, c.ci, c.co]) as tf.Tensor4D;
const y = tf.conv2d(x, f, c.s, 'same');
const dy = tf.randomNormal(y.shape) as tf.Tensor4D;
const [n, h, w, ci] = x.shape;
const attrs = { strides: c.s, pad: 'same', dataFormat: 'NHWC', inputShape: x.shape };
const info = tf.backend_util.computeConv2DInfo(x.shape, f.shape, c.s, 1, 'same');
const rows = phasePlan(c.k, c.s, info.padInfo.top, h, info.outHeight);
const cols = phasePlan(c.k, c.s, info.padInfo.left, w, info.outWidth);
function trimmed(plan: any, phi: number) {
  const t: Int32Array = plan.taps[phi];
  let first = t.findIndex((a: number) => a >= 0),
    last = t.length - 1;
  while (t[last]! < 0) last--;
  return {
    stride: 1,
    length: last - first + 1,
    taps: [t.slice(first, last + 1)],
    padBefore: plan.padBefore - first,
    padAfter: plan.padAfter - (t.length - 1 - last),
    perPhase: plan.perPhase,
  };
}
const variants: Record<string, () => tf.Tensor> = {
  current: () =>
    tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: f }, attrs as any) as tf.Tensor,
  separate: () =>
    tf.tidy(() => {
      const vals = f.dataSync() as Float32Array;
      const outs = activePhases(rows, cols).map(([ph, pw]) => {
        const r = trimmed(rows, ph),
          cc = trimmed(cols, pw);
        const filt = phaseFilter(vals, f.shape, r as any, cc as any, [[0, 0]]);
        return stride1Conv(
          dy,
          filt,
          { top: r.padBefore, bottom: r.padAfter, left: cc.padBefore, right: cc.padAfter },
          false,
        );
      });
      const all = tf.concat(outs, 3);
      const [, u, v] = all.shape;
      return tf.reshape(
        tf.transpose(tf.reshape(all, [n, u, v, c.s, c.s, ci]), [0, 1, 3, 2, 4, 5]),
        [n, u * c.s, v * c.s, ci],
      );
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
for (let r = 0; r < 7; r++) {
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
    t.sort((a, b) => a - b)[3]!.toFixed(1),
    'ms  min',
    t[0]!.toFixed(1),
  );
