import { tf } from '../packages/core/src/index.js';
import { axisPhases, phaseFilter } from '../packages/core/src/kernels/phase_filter.js';
await tf.setBackend('wasm');
const f = tf.randomNormal([3, 3, 512, 512]) as tf.Tensor4D;
const rows = axisPhases(3, 1, 1, 4, 4)[0]!;
for (let r = 0; r < 5; r++) {
  let t0 = performance.now();
  const v = f.dataSync() as Float32Array;
  const t1 = performance.now();
  const g = phaseFilter(v, f.shape, rows, rows);
  const t2 = performance.now();
  const viaT = tf.tidy(() => tf.transpose(tf.reverse(f, [0, 1]), [0, 1, 3, 2]));
  viaT.dataSync();
  const t3 = performance.now();
  console.log(
    'dataSync',
    (t1 - t0).toFixed(1),
    'phaseFilter',
    (t2 - t1).toFixed(1),
    'reverse+transpose',
    (t3 - t2).toFixed(1),
  );
  g.dispose();
  viaT.dispose();
}
