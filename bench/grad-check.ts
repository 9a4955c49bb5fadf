// Gradients of a backbone+head loss on wasm (our kernels) vs the cpu backend, per variable.
// Usage: npx tsx bench/grad-check.ts <arch> [imageSize] [batch]
import { initBackend, l2Normalize, Rng, tf } from '../packages/core/src/index.js';
import { buildEncoder } from '../packages/cli/src/model-file.js';

const [arch = 'resnet18', size = '28', batch = '4'] = process.argv.slice(2);
const s = Number(size);
const n = Number(batch);
const xs = new Rng(3).normalArray(n * s * s);
const ws = new Rng(4).normalArray(n * 128);

async function grads(backend: 'cpu' | 'wasm') {
  await initBackend({ backend });
  const built = buildEncoder(
    { arch, backbone: { inChannels: 1 }, hiddenDim: 64, dim: 128 },
    new Rng(0),
  );
  const names = built.encoder.params.parameterNames();
  const vars = names.map((nm) => built.encoder.params.get(nm));
  const x = tf.tensor4d(xs, [n, s, s, 1]);
  const w = tf.tensor2d(ws, [n, 128]);
  const { value, grads } = tf.variableGrads(
    () => tf.sum(tf.mul(l2Normalize(built.encoder.apply(x, { training: true })), w)) as tf.Scalar,
    vars,
  );
  const out = new Map<string, Float32Array>();
  names.forEach((nm, i) => out.set(nm, grads[vars[i]!.name]!.dataSync() as Float32Array));
  return { loss: value.dataSync()[0]!, out };
}

const a = await grads('cpu');
const b = await grads('wasm');
console.log(`loss cpu ${a.loss} wasm ${b.loss}`);
let worst = 0;
for (const [name, g] of a.out) {
  const h = b.out.get(name)!;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < g.length; i++) {
    diff = Math.max(diff, Math.abs(g[i]! - h[i]!));
    scale = Math.max(scale, Math.abs(g[i]!));
  }
  const rel = diff / Math.max(scale, 1e-12);
  worst = Math.max(worst, rel);
  if (rel > 1e-3)
    console.log(`  ${name}: rel ${rel.toExponential(2)} (max |g| ${scale.toExponential(2)})`);
}
console.log(
  `${arch}@${s} b${n}: worst relative gradient difference ${worst.toExponential(2)} over ${a.out.size} variables`,
);
