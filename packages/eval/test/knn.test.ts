import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, tf } from '@disco/core';
import { knnClassify } from '@disco/eval';
import { gaussianClusters, knnReference } from './helpers.js';

// Six train points in 2-D, three classes; only their directions matter (cosine similarity),
// so each sits at its own radius. Against the query q1 = (5, 0) their similarities are:
//   A class 0: 1      B class 1: 0.9    C class 1: 0.85
//   D class 2: -0.5   E class 2: -1     F class 0: 0
const dir = (c: number, r: number): number[] => [r * c, r * Math.sqrt(1 - c * c)];
const TRAIN = new Float32Array([
  ...dir(1, 2), // A
  ...dir(0.9, 3), // B
  ...dir(0.85, 0.5), // C
  ...dir(-0.5, 4), // D
  ...dir(-1, 1), // E
  0,
  -1, // F
]);
const TRAIN_Y = new Int32Array([0, 1, 1, 2, 2, 0]);

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('knnClassify: the weighted vote', () => {
  it('lets one close neighbour outvote two farther ones at t = 0.1', async () => {
    // k = 3 picks A, B, C. Majority says class 1 (B, C). Weighted at t = 0.1:
    //   class 0: e^(1/0.1) = 22026.5;  class 1: e^(0.9/0.1) + e^(0.85/0.1) = 8103.1 + 4914.8
    //   = 13017.9, so class 0 wins. At t = 1: class 0 e^1 = 2.718 < class 1 e^0.9 + e^0.85
    //   = 4.799, and at t = 100 (nearly equal weights) the majority, class 1, wins.
    const q1 = new Float32Array([5, 0]);
    const vote = (t: number) =>
      knnClassify({
        trainFeatures: TRAIN,
        trainLabels: TRAIN_Y,
        testFeatures: q1,
        numClasses: 3,
        k: 3,
        t,
      });
    expect([...(await vote(0.1)).predictions]).toEqual([0]);
    expect([...(await vote(1)).predictions]).toEqual([1]);
    expect([...(await vote(100)).predictions]).toEqual([1]);
  });

  it('classifies several queries, reports top-1 and clamps k to the train size', async () => {
    // q2 = (-1, 0.1): nearest E (0.995, class 2), D (0.584, class 2), F (-0.0995, class 0).
    const test = new Float32Array([5, 0, -1, 0.1]);
    const r = await knnClassify({
      trainFeatures: TRAIN,
      trainLabels: TRAIN_Y,
      testFeatures: test,
      testLabels: [0, 1],
      numClasses: 3,
      k: 3,
    });
    expect([...r.predictions]).toEqual([0, 2]);
    expect(r.top1).toBe(0.5);
    expect(r.k).toBe(3);

    // k = 200 > 6 train rows: all six vote. q1 then adds F's e^0 to class 0: still class 0.
    const all = await knnClassify({
      trainFeatures: TRAIN,
      trainLabels: TRAIN_Y,
      testFeatures: test,
      numClasses: 3,
    });
    expect(all.k).toBe(6);
    expect(all.top1).toBeUndefined();
    expect([...all.predictions]).toEqual([0, 2]);
  });

  it('does not overflow at a tiny temperature', async () => {
    // q3 along B: B 1 and C 0.9946 (class 1) against A 0.9 (class 0). At t = 0.001 the raw
    // weights e^(1000 sim) are all Infinity, which would tie and pick class 0; shifted by the
    // best similarity they are 1 + e^-5.4 against e^-100, so class 1.
    const r = await knnClassify({
      trainFeatures: TRAIN,
      trainLabels: TRAIN_Y,
      testFeatures: new Float32Array(dir(0.9, 1)),
      numClasses: 3,
      k: 3,
      t: 0.001,
    });
    expect([...r.predictions]).toEqual([1]);
  });
});

describe('knnClassify: batching and inputs', () => {
  const rng = new Rng(11);
  const dim = 16;
  const means = rng.normalArray(5 * dim, 0, 1);
  const train = gaussianClusters(rng, 300, dim, 5, means, 1.2);
  const test = gaussianClusters(rng, 50, dim, 5, means, 1.2);
  const base = { trainLabels: train.y, numClasses: 5, k: 20, t: 0.1 };

  it('predicts the same for every chunk size, equal to a brute-force reference', async () => {
    const expected = knnReference(train.x, train.y, test.x, dim, 5, 20, 0.1);
    for (const chunkSize of [1, 7, 50, 1000]) {
      const r = await knnClassify({
        ...base,
        trainFeatures: train.x,
        testFeatures: test.x,
        testLabels: test.y,
        chunkSize,
      });
      expect([...r.predictions]).toEqual([...expected]);
    }
    const acc = expected.filter((p, i) => p === test.y[i]).length / 50;
    const r = await knnClassify({
      ...base,
      trainFeatures: train.x,
      testFeatures: test.x,
      testLabels: test.y,
    });
    expect(r.top1).toBeCloseTo(acc, 12);
    // Not a trivial set: the clusters overlap, and kNN still beats chance (0.2) by far.
    expect(acc).toBeGreaterThan(0.6);
    expect(acc).toBeLessThan(1);
  });

  it('takes tensors, leaves them alive, and leaks no tensor over repeated calls', async () => {
    const trainT = tf.tensor2d(train.x, [300, dim]);
    const testT = tf.tensor2d(test.x, [50, dim]);
    const fromArrays = await knnClassify({ ...base, trainFeatures: train.x, testFeatures: test.x });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const r = await knnClassify({
        ...base,
        trainFeatures: trainT,
        testFeatures: testT,
        chunkSize: 16,
      });
      expect([...r.predictions]).toEqual([...fromArrays.predictions]);
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(trainT.isDisposed || testT.isDisposed).toBe(false);
    tf.dispose([trainT, testT]);
  });

  it('rejects bad input with a message naming the rule and the value', async () => {
    const ok = { ...base, trainFeatures: train.x, testFeatures: test.x };
    await expect(knnClassify({ ...ok, testFeatures: new Float32Array(15) })).rejects.toThrow(
      /knnClassify: testFeatures has 15 values, not a whole number of rows of dim 16/,
    );
    await expect(knnClassify({ ...ok, dim: 8 })).rejects.toThrow(
      /knnClassify: trainFeatures has dim 16, but dim 8 was given/,
    );
    await expect(knnClassify({ ...ok, trainLabels: train.y.subarray(0, 7) })).rejects.toThrow(
      /knnClassify: trainFeatures has 4800 values, not a whole number per label \(7 labels\)/,
    );
    const badLabels = Int32Array.from(train.y);
    badLabels[4] = 5;
    await expect(knnClassify({ ...ok, trainLabels: badLabels })).rejects.toThrow(
      /knnClassify: trainLabels\[4\] must be an integer class in \[0, 5\), got 5/,
    );
    await expect(knnClassify({ ...ok, testLabels: [0, 1] })).rejects.toThrow(
      /knnClassify: testLabels must have one label per row \(50\), got 2/,
    );
    await expect(knnClassify({ ...ok, k: 0 })).rejects.toThrow(
      /knnClassify: k must be an integer >= 1, got 0/,
    );
    await expect(knnClassify({ ...ok, t: 0 })).rejects.toThrow(
      /knnClassify: t must be a finite number > 0, got 0/,
    );
    await expect(knnClassify({ ...ok, numClasses: 0 })).rejects.toThrow(
      /knnClassify: numClasses must be an integer >= 1, got 0/,
    );
    await expect(knnClassify({ ...ok, chunkSize: 2.5 })).rejects.toThrow(
      /knnClassify: chunkSize must be an integer >= 1, got 2.5/,
    );
    const wrongWidth = tf.zeros([50, 8]) as tf.Tensor2D;
    await expect(knnClassify({ ...ok, testFeatures: wrongWidth })).rejects.toThrow(
      /knnClassify: testFeatures must be a tensor \[n, 16\], got \[50,8\]/,
    );
    wrongWidth.dispose();
  });
});
