/**
 * Test fixtures for @disco/eval: seeded Gaussian clusters and a plain-JavaScript reference
 * of the weighted kNN vote (float64, brute force) to check the batched version against.
 */
import { Rng } from '@disco/core';

/** `n` rows `[n, dim]` around per-class means, labels uniform over `classes`. */
export function gaussianClusters(
  rng: Rng,
  n: number,
  dim: number,
  classes: number,
  means: Float32Array,
  noise: number,
): { x: Float32Array; y: Int32Array } {
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = rng.int(classes);
    y[i] = c;
    for (let d = 0; d < dim; d++) x[i * dim + d] = means[c * dim + d]! + noise * rng.normal();
  }
  return { x, y };
}

/** Weighted kNN by brute force: cosine similarity, k best, weights exp(sim / t). */
export function knnReference(
  train: Float32Array,
  trainY: Int32Array,
  test: Float32Array,
  dim: number,
  numClasses: number,
  k: number,
  t: number,
): Int32Array {
  const unit = (x: Float32Array, i: number): number[] => {
    const row = [...x.subarray(i * dim, (i + 1) * dim)];
    const norm = Math.sqrt(row.reduce((s, v) => s + v * v, 0));
    return row.map((v) => v / norm);
  };
  const nTrain = trainY.length;
  const bank = Array.from({ length: nTrain }, (_, j) => unit(train, j));
  const nTest = test.length / dim;
  const out = new Int32Array(nTest);
  for (let i = 0; i < nTest; i++) {
    const q = unit(test, i);
    const sims = bank.map((b, j) => ({ j, s: b.reduce((acc, v, d) => acc + v * q[d]!, 0) }));
    sims.sort((a, b) => b.s - a.s);
    const scores = new Array<number>(numClasses).fill(0);
    for (const { j, s } of sims.slice(0, k)) scores[trainY[j]!]! += Math.exp(s / t);
    out[i] = scores.indexOf(Math.max(...scores));
  }
  return out;
}
