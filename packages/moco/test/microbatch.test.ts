import { describe, expect, it } from 'vitest';
import {
  BatchNorm,
  bindEncoder,
  Conv2d,
  globalAvgPool,
  type Module,
  type Params,
  Rng,
  Sequential,
  tf,
} from '@disco/core';
import { ProjectionHead } from '@disco/heads';
import { MoCo } from '@disco/moco';

function encoder(seed: number, withBn: boolean) {
  const layers: Module[] = [
    new Conv2d('conv1', { inChannels: 1, outChannels: 8, kernelSize: 3, stride: 2 }),
  ];
  if (withBn) layers.push(new BatchNorm('bn1', { channels: 8 }));
  layers.push(
    {
      init: () => {},
      apply: (_p: Params, x: tf.Tensor) => globalAvgPool(tf.relu(x) as tf.Tensor4D),
    },
    new ProjectionHead({ inDim: 8, hiddenDim: 16, outDim: 4 }),
  );
  return bindEncoder(new Sequential<tf.Tensor4D, tf.Tensor2D>(layers), 4, new Rng(seed));
}

/** Three steps of MoCo on fixed views; everything a step changes, read back. */
function run(withBn: boolean, microBatch?: number, bnGroupSize = 4) {
  const moco = new MoCo(encoder(7, withBn), new Rng(3), {
    dim: 4,
    queueSize: 64,
    momentum: 0.9,
    bnGroupSize,
  });
  const data = new Rng(1);
  const losses: number[] = [];
  for (let s = 0; s < 3; s++) {
    const v1 = tf.tensor4d(data.normalArray(16 * 64), [16, 8, 8, 1]);
    const v2 = tf.tensor4d(data.normalArray(16 * 64), [16, 8, 8, 1]);
    losses.push(moco.step(v1, v2, 0.1, microBatch ? { microBatch } : {}).loss);
    tf.dispose([v1, v2]);
  }
  const read = (p: Params) => new Map(p.names().map((n) => [n, [...p.get(n).dataSync()]]));
  const out = {
    losses,
    query: read(moco.query.params),
    key: read(moco.key.params),
    queue: [...moco.queue.keys.dataSync()],
  };
  moco.dispose();
  return out;
}

function expectClose(a: ReturnType<typeof run>, b: ReturnType<typeof run>, tol: number) {
  for (let i = 0; i < 3; i++) expect(Math.abs(a.losses[i]! - b.losses[i]!)).toBeLessThan(tol);
  for (const part of ['query', 'key'] as const) {
    for (const [name, values] of a[part]) {
      const other = b[part].get(name)!;
      const worst = values.reduce((m, v, i) => Math.max(m, Math.abs(v - other[i]!)), 0);
      expect(worst, `${part} ${name}`).toBeLessThan(tol);
    }
  }
  const worstQueue = a.queue.reduce((m, v, i) => Math.max(m, Math.abs(v - b.queue[i]!)), 0);
  expect(worstQueue).toBeLessThan(tol);
}

describe('MoCo micro-batching', () => {
  it('without BatchNorm, equals one large step (loss, both encoders, queue)', () => {
    const whole = run(false);
    expectClose(whole, run(false, 4), 2e-6);
    expectClose(whole, run(false, 8), 2e-6);
  });

  it('with BatchNorm, equals the group-wise definition: per-group statistics, running stats once', () => {
    // The whole batch with ghost groups of 4 is the definition; micro-batches of 4 and 8.
    const whole = run(true);
    expectClose(whole, run(true, 4), 5e-6);
    expectClose(whole, run(true, 8), 5e-6);
    // Running statistics moved (they are compared above, so they must not be trivially equal).
    expect(whole.query.get('bn1.running_mean')!.some((v) => Math.abs(v) > 1e-3)).toBe(true);
    // The comparison sees BN grouping: one group of 16 is measurably another model.
    const oneGroup = run(true, undefined, 16);
    expect(Math.abs(oneGroup.losses[2]! - whole.losses[2]!)).toBeGreaterThan(1e-3);
  });

  it('keeps the tensor count flat and refuses sizes that split BN groups', () => {
    const moco = new MoCo(encoder(7, true), new Rng(3), { dim: 4, queueSize: 64, bnGroupSize: 4 });
    const v = tf.tensor4d(new Rng(2).normalArray(16 * 64), [16, 8, 8, 1]);
    moco.step(v, v, 0.1, { microBatch: 8 });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) moco.step(v, v, 0.1, { microBatch: 4 });
    expect(tf.memory().numTensors).toBe(before);
    expect(() => moco.step(v, v, 0.1, { microBatch: 6 })).toThrow(
      /microBatch 6 must be a positive integer that divides the batch 16/,
    );
    expect(() => moco.step(v, v, 0.1, { microBatch: 2 })).toThrow(
      /microBatch 2 must be a multiple of the BN group size 4/,
    );
    v.dispose();
    moco.dispose();
  });
});
