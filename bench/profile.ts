// Per-kernel profile of one MoCo step. Usage: npx tsx bench/profile.ts <arch> [imageSize] [batch]
import { initBackend, Rng, tf } from '../packages/core/src/index.js';
import { MoCo } from '../packages/moco/src/index.js';
import { buildEncoder } from '../packages/cli/src/model-file.js';

const [arch = 'resnet18', size = '32', batch = '64'] = process.argv.slice(2);
await initBackend();
const n = Number(batch);
const s = Number(size);
const built = buildEncoder(
  { arch, backbone: { inChannels: 1 }, hiddenDim: 2048, dim: 128 },
  new Rng(0),
);
const moco = new MoCo(built.encoder, new Rng(1), { queueSize: 4096 });
const x = tf.randomNormal([n, s, s, 1]) as tf.Tensor4D;
moco.step(x, x, 0.01);
const t0 = Date.now();
const info = await tf.profile(() => {
  moco.step(x, x, 0.01);
});
const wall = Date.now() - t0;
const byName = new Map<string, number>();
for (const k of info.kernels)
  byName.set(k.name, (byName.get(k.name) ?? 0) + (k.kernelTimeMs as number));
const total = [...byName.values()].reduce((a, b) => a + b, 0);
console.log(
  `${arch} ${s}x${s} b${n}: profiled step ${wall} ms, kernel sum ${total.toFixed(0)} ms, ${info.kernels.length} kernels, peak ${(info.peakBytes / 2 ** 20).toFixed(0)} MB`,
);
for (const [name, ms] of [...byName].sort((a, b) => b[1] - a[1]).slice(0, 18)) {
  console.log(
    `  ${name.padEnd(40)} ${ms.toFixed(1).padStart(9)} ms ${((100 * ms) / total).toFixed(1).padStart(5)}%`,
  );
}
