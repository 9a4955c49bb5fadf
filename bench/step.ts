// Times MoCo / DisCo training steps of candidate backbones on the current backend.
// Usage: npx tsx bench/step.ts <arch> [imageSize] [batch] [steps] [smallStem] [width]
import { initBackend, Rng, tf } from '../packages/core/src/index.js';
import { MoCo } from '../packages/moco/src/index.js';
import { buildEncoder } from '../packages/cli/src/model-file.js';

const [
  arch = 'mobilenet_v3_small',
  size = '32',
  batch = '64',
  steps = '4',
  small = '0',
  width = '1',
] = process.argv.slice(2);
await initBackend();
const n = Number(batch);
const s = Number(size);
const built = buildEncoder(
  {
    arch,
    backbone: { inChannels: 1, smallStem: small === '1', widthMultiplier: Number(width) },
    hiddenDim: 2048,
    dim: 128,
  },
  new Rng(0),
);
const moco = new MoCo(built.encoder, new Rng(1), { queueSize: 4096 });
const x = tf.randomNormal([n, s, s, 1]) as tf.Tensor4D;
const times: number[] = [];
for (let i = 0; i < Number(steps) + 1; i++) {
  const t0 = Date.now();
  moco.step(x, x, 0.01);
  times.push(Date.now() - t0);
}
const fwd: number[] = [];
for (let i = 0; i < 3; i++) {
  const t0 = Date.now();
  tf.tidy(() => built.encoder.apply(x, { training: true, bnGroupSize: 32 }).dataSync());
  fwd.push(Date.now() - t0);
}
const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)]!;
const stepMs = med(times.slice(1));
console.log(
  `${arch} ${s}x${s} b${n} smallStem=${small} width=${width}: params ${(built.encoder.params.countParameters() / 1e6).toFixed(2)}M, ` +
    `MoCo step ${stepMs} ms (${((1000 * n) / stepMs).toFixed(1)} img/s), train-mode fwd ${med(fwd)} ms (${((1000 * n) / med(fwd)).toFixed(1)} img/s)`,
);
