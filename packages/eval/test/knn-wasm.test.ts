import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng, tf } from '@disco/core';
import { knnClassify } from '@disco/eval';
import { gaussianClusters, knnReference } from './helpers.js';

// The kNN monitor runs forward-only ops (matMul, topk), so wasm needs no training kernels.
beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
  await tf.ready();
});

afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('knnClassify on wasm', () => {
  it('matches the brute-force reference for every chunk size, with no leak', async () => {
    expect(tf.getBackend()).toBe('wasm');
    const rng = new Rng(23);
    const dim = 64;
    const means = rng.normalArray(10 * dim, 0, 0.3);
    const train = gaussianClusters(rng, 2000, dim, 10, means, 1);
    const test = gaussianClusters(rng, 100, dim, 10, means, 1);
    const expected = knnReference(train.x, train.y, test.x, dim, 10, 200, 0.1);
    const before = tf.memory().numTensors;
    for (const chunkSize of [1, 7, 100]) {
      const r = await knnClassify({
        trainFeatures: train.x,
        trainLabels: train.y,
        testFeatures: test.x,
        testLabels: test.y,
        numClasses: 10,
        chunkSize,
      });
      expect(r.k).toBe(200);
      expect([...r.predictions]).toEqual([...expected]);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keeps the hand-computed vote: one close neighbour beats two at t = 0.1', async () => {
    // Train directions with cosine 1 (class 0), 0.9 and 0.85 (class 1) to the query (1, 0):
    // e^10 = 22026 for class 0 against e^9 + e^8.5 = 13018 for class 1.
    const c = [1, 0.9, 0.85];
    const train = new Float32Array(c.flatMap((v) => [v, Math.sqrt(1 - v * v)]));
    const r = await knnClassify({
      trainFeatures: train,
      trainLabels: [0, 1, 1],
      testFeatures: new Float32Array([1, 0]),
      numClasses: 2,
      k: 3,
    });
    expect([...r.predictions]).toEqual([0]);
  });
});
