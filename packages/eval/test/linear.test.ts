import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, tf } from '@disco/core';
import { linearProbe } from '@disco/eval';
import { gaussianClusters } from './helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('linearProbe', () => {
  it('separates Gaussian clusters (> 95%) by default; its weights reproduce it', async () => {
    const rng = new Rng(5);
    const dim = 8;
    // Class means 4 apart on average per axis, offset and scaled so z-scoring matters.
    const means = rng.normalArray(4 * dim, 0, 2).map((v) => 50 + 10 * v);
    const train = gaussianClusters(rng, 1000, dim, 4, means, 6);
    const test = gaussianClusters(rng, 400, dim, 4, means, 6);
    const r = await linearProbe({
      trainFeatures: train.x,
      trainLabels: train.y,
      testFeatures: test.x,
      testLabels: test.y,
      numClasses: 4,
      rng: new Rng(1),
    });
    expect(r.top1).toBeGreaterThan(0.95);
    expect(r.trainTop1).toBeGreaterThan(0.95);
    expect(r.trainLoss).toBeLessThan(0.3);

    // The returned statistics are the train columns' mean and population std, and
    // ((x - mean) / std) weight + bias, argmax, gives the returned predictions.
    const { weight, bias, mean, std } = r.weights;
    expect(weight.length).toBe(dim * 4);
    for (let d = 0; d < dim; d++) {
      const col = Array.from({ length: 1000 }, (_, i) => train.x[i * dim + d]!);
      const m = col.reduce((s, v) => s + v, 0) / 1000;
      const s = Math.sqrt(col.reduce((acc, v) => acc + (v - m) ** 2, 0) / 1000);
      expect(mean[d]).toBeCloseTo(m, 3);
      expect(std[d]).toBeCloseTo(s, 3);
    }
    let hits = 0;
    for (let i = 0; i < 400; i++) {
      const logits = [...bias];
      for (let d = 0; d < dim; d++) {
        const z = (test.x[i * dim + d]! - mean[d]!) / std[d]!;
        for (let c = 0; c < 4; c++) logits[c]! += z * weight[d * 4 + c]!;
      }
      const p = logits.indexOf(Math.max(...logits));
      expect(p).toBe(r.predictions[i]);
      if (p === test.y[i]) hits++;
    }
    expect(r.top1).toBe(hits / 400);
  });

  it('recovers the Bayes log-odds of two unit Gaussians at -1 and +1', async () => {
    // x ~ N(-1, 1) for class 0 (a quarter of the rows), N(+1, 1) for class 1: the log-odds
    // are log p(1 | x) / p(0 | x) = 2x + log 3. The probe sees z = (x - m) / s, so its logit
    // difference must be 2 s z + 2 m + log 3.
    const rng = new Rng(9);
    const n = 4000;
    const x = new Float32Array(n);
    const y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      y[i] = i % 4 === 0 ? 0 : 1;
      x[i] = (y[i] === 1 ? 1 : -1) + rng.normal();
    }
    const r = await linearProbe({
      trainFeatures: x,
      trainLabels: y,
      testFeatures: x.subarray(0, 100),
      testLabels: y.subarray(0, 100),
      numClasses: 2,
      epochs: 100,
      batchSize: 1000,
      lr: 0.05,
      rng: new Rng(2),
    });
    const { weight, bias, mean, std } = r.weights;
    const slope = weight[1]! - weight[0]!;
    const intercept = bias[1]! - bias[0]!;
    // Maximum likelihood is within a few standard errors (about 0.06) of the truth.
    expect(slope).toBeGreaterThan(2 * std[0]! - 0.25);
    expect(slope).toBeLessThan(2 * std[0]! + 0.25);
    expect(Math.abs(intercept - 2 * mean[0]! - Math.log(3))).toBeLessThan(0.15);
    // The Bayes classifier (x > -log(3) / 2) errs on 0.25 Phi(-0.45) + 0.75 Phi(-1.55) = 0.127.
    expect(r.trainTop1).toBeGreaterThan(0.84);
    expect(r.trainTop1).toBeLessThan(0.9);
  });

  it('with weightDecay, stops where the L2-penalised loss is stationary', async () => {
    // Two overlapping classes in 3-d; at the optimum of mean CE + wd / 2 ||W||^2 the weight
    // gradient mean_i z_i (p_i - y_i) + wd W vanishes (the bias is not penalised).
    const rng = new Rng(11);
    const n = 2000;
    const dim = 3;
    const x = new Float32Array(n * dim);
    const y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      y[i] = i % 2;
      for (let d = 0; d < dim; d++) x[i * dim + d] = (y[i] ? 0.5 : -0.5) * (d + 1) + rng.normal();
    }
    const fit = (weightDecay: number) =>
      linearProbe({
        trainFeatures: x,
        trainLabels: y,
        testFeatures: x.subarray(0, 10 * dim),
        testLabels: y.subarray(0, 10),
        numClasses: 2,
        epochs: 200,
        batchSize: n,
        lr: 0.05,
        weightDecay,
        rng: new Rng(1),
      });
    const wd = 0.2;
    const [free, decayed] = [await fit(0), await fit(wd)];
    const norm = (w: Float32Array) => Math.hypot(...w);
    expect(norm(decayed.weights.weight)).toBeLessThan(0.7 * norm(free.weights.weight));

    const { weight, bias, mean, std } = decayed.weights;
    const grad = new Float64Array(dim * 2);
    for (let i = 0; i < n; i++) {
      const z = Array.from({ length: dim }, (_, d) => (x[i * dim + d]! - mean[d]!) / std[d]!);
      const logit = [0, 1].map(
        (c) => bias[c]! + z.reduce((s, v, d) => s + v * weight[d * 2 + c]!, 0),
      );
      const p1 = 1 / (1 + Math.exp(logit[0]! - logit[1]!));
      const p = [1 - p1, p1];
      for (let d = 0; d < dim; d++) {
        for (let c = 0; c < 2; c++)
          grad[d * 2 + c]! += (z[d]! * (p[c]! - (y[i] === c ? 1 : 0))) / n;
      }
    }
    for (let k = 0; k < dim * 2; k++) {
      expect(Math.abs(grad[k]! + wd * weight[k]!)).toBeLessThan(2e-3);
    }
    await expect(fit(-1)).rejects.toThrow(/weightDecay must be a finite number >= 0, got -1/);
  });

  it('stays near chance on random labels and is repeatable for a seed', async () => {
    const rng = new Rng(3);
    const dim = 16;
    const x = rng.normalArray(1200 * dim);
    const y = Int32Array.from({ length: 1200 }, () => rng.int(10));
    const run = () =>
      linearProbe({
        trainFeatures: x.subarray(0, 800 * dim),
        trainLabels: y.subarray(0, 800),
        testFeatures: x.subarray(800 * dim),
        testLabels: y.subarray(800),
        numClasses: 10,
        epochs: 30,
        rng: new Rng(4),
      });
    const before = tf.memory().numTensors;
    const a = await run();
    const b = await run();
    expect(tf.memory().numTensors).toBe(before);
    // 400 test rows at chance 0.1: standard deviation 0.015.
    expect(a.top1).toBeGreaterThan(0.04);
    expect(a.top1).toBeLessThan(0.17);
    expect(a.trainTop1).toBeGreaterThan(a.top1);
    expect(b.top1).toBe(a.top1);
    expect([...b.weights.weight]).toEqual([...a.weights.weight]);
  });

  it('takes tensors and rejects bad input naming the rule and the value', async () => {
    const x = tf.tensor2d([0, 1, 1, 0, 0.1, 0.9, 0.9, 0.2], [4, 2]);
    const y = [0, 1, 0, 1];
    const ok = {
      trainFeatures: x,
      trainLabels: y,
      testFeatures: x,
      testLabels: y,
      numClasses: 2,
      epochs: 50,
      lr: 0.05,
      rng: new Rng(0),
    };
    const r = await linearProbe(ok);
    expect(r.top1).toBe(1);
    expect(x.isDisposed).toBe(false);
    await expect(linearProbe({ ...ok, numClasses: 1 })).rejects.toThrow(
      /linearProbe: numClasses must be an integer >= 2, got 1/,
    );
    await expect(linearProbe({ ...ok, lr: -1 })).rejects.toThrow(
      /linearProbe: lr must be a finite number > 0, got -1/,
    );
    await expect(linearProbe({ ...ok, testFeatures: new Float32Array(3) })).rejects.toThrow(
      /linearProbe: testFeatures has 3 values, not a whole number of rows of dim 2/,
    );
    await expect(linearProbe({ ...ok, trainLabels: [0, 1, 2, 1] })).rejects.toThrow(
      /linearProbe: trainLabels\[2\] must be an integer class in \[0, 2\), got 2/,
    );
    await expect(linearProbe({ ...ok, trainLabels: [0, 1, 1] })).rejects.toThrow(
      /linearProbe: trainFeatures has 4 rows but there are 3 labels/,
    );
    x.dispose();
  });
});
