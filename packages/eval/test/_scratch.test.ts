import { it } from 'vitest';
import { Rng, tf } from '@disco/core';
import { linearProbe } from '@disco/eval';

function clusters(rng: Rng, n: number, dim: number, classes: number, means: Float32Array, noise: number) {
  const x = new Float32Array(n * dim); const y = new Int32Array(n);
  for (let i = 0; i < n; i++) { const c = rng.int(classes); y[i] = c;
    for (let d = 0; d < dim; d++) x[i * dim + d] = means[c * dim + d]! + noise * rng.normal() + 3; }
  return { x, y };
}
it('scratch', async () => {
  await tf.setBackend('cpu');
  for (const dim of [64, 512]) for (const [lr, epochs] of [[1e-3, 100], [1e-2, 100], [1e-3, 20], [1e-2,20]] as const) {
    const rng = new Rng(1); const classes = 10;
    const means = rng.normalArray(classes * dim, 0, 0.25);
    const tr = clusters(rng, 5000, dim, classes, means, 1); const te = clusters(rng, 1000, dim, classes, means, 1);
    const t0 = Date.now();
    const r = await linearProbe({ trainFeatures: tr.x, trainLabels: tr.y, testFeatures: te.x, testLabels: te.y, numClasses: classes, epochs, lr, rng });
    const shuffled = new Rng(5).permutation(5000).map((i) => tr.y[i]!);
    const r2 = await linearProbe({ trainFeatures: tr.x, trainLabels: shuffled, testFeatures: te.x, testLabels: te.y, numClasses: classes, epochs, lr, rng });
    console.log(dim, lr, epochs, 'sep', r.top1, r.trainTop1, r.trainLoss.toFixed(3), 'rand', r2.top1, r2.trainTop1, Date.now() - t0, 'ms', tf.memory().numTensors);
  }
});
