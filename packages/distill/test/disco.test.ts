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
import { consistencyLoss, discoExtraLoss, Teacher } from '@disco/distill';

function encoder(rng: Rng, width: number) {
  const net: Module<tf.Tensor4D, tf.Tensor2D> = new Sequential([
    new Conv2d('conv1', { inChannels: 1, outChannels: width, kernelSize: 3, stride: 2 }),
    new BatchNorm('bn1', { channels: width }),
    {
      init: () => {},
      apply: (_p: Params, x: tf.Tensor) => globalAvgPool(tf.relu(x) as tf.Tensor4D),
    },
    new ProjectionHead({ inDim: width, hiddenDim: 32, outDim: 8 }),
  ]);
  return bindEncoder(net, 8, rng);
}

describe('consistencyLoss', () => {
  it('is the batch mean of per-sample squared distances', () => {
    const s = tf.tensor2d([
      [1, 0],
      [0, 1],
    ]);
    const t = tf.tensor2d([
      [0, 1],
      [0, 1],
    ]);
    // sample 0: (1-0)^2 + (0-1)^2 = 2; sample 1: 0; mean = 1.
    expect(consistencyLoss(s, t).dataSync()[0]).toBeCloseTo(1, 6);
    // For unit vectors: 2 - 2 cos; cos(60 deg) = 0.5 -> 1.
    const a = tf.tensor2d([[1, 0]]);
    const b = tf.tensor2d([[0.5, Math.sqrt(3) / 2]]);
    expect(consistencyLoss(a, b).dataSync()[0]).toBeCloseTo(1, 6);
    expect(() => consistencyLoss(a, s)).toThrow(/differ in shape/);
  });
});

describe('DisCo step', () => {
  it('adds weighted consistency terms on both views and pulls the student to the teacher', () => {
    const rng = new Rng(0);
    const teacher = new Teacher(encoder(new Rng(9), 16), 'train', 4);
    const moco = new MoCo(encoder(rng, 8), rng, { dim: 8, queueSize: 32, bnGroupSize: 4 });
    const data = tf.tensor4d(new Rng(1).normalArray(8 * 8 * 8), [8, 8, 8, 1]);
    const v1 = tf.add(data, tf.randomNormal(data.shape, 0, 0.05, 'float32', 3)) as tf.Tensor4D;
    const v2 = tf.add(data, tf.randomNormal(data.shape, 0, 0.05, 'float32', 4)) as tf.Tensor4D;
    const ctx = { training: true, bnGroupSize: 4 };
    const distance = () =>
      tf.tidy(() => consistencyLoss(moco.embed(v1, ctx), teacher.embed(v1)).dataSync()[0]!);

    const d0 = distance();
    const { extraLoss, dispose } = discoExtraLoss(teacher, v1, v2, { weight: 4 });
    const m = moco.step(v1, v2, 0.05, { extraLoss });
    dispose();
    expect(Object.keys(m.parts).sort()).toEqual(['infonce', 'mse_v1', 'mse_v2']);
    expect(m.loss).toBeCloseTo(m.parts.infonce! + m.parts.mse_v1! + m.parts.mse_v2!, 4);
    // The first term is 4x the student-teacher distance before the update.
    expect(m.parts.mse_v1! / 4).toBeCloseTo(d0, 4);

    const before = tf.memory().numTensors;
    for (let i = 0; i < 15; i++) {
      const t = discoExtraLoss(teacher, v1, v2, { weight: 4 });
      moco.step(v1, v2, 0.05, { extraLoss: t.extraLoss, contrastiveWeight: 0 });
      t.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(distance()).toBeLessThan(0.5 * d0);
    // The teacher did not move.
    const w = teacher.encoder.params.get('conv1.weight');
    expect(w.trainable).toBe(false);
  });

  it('micro-batched DisCo steps equal whole-batch steps (teacher with train-mode ghost BN)', () => {
    const steps = (microBatch?: number) => {
      const moco = new MoCo(encoder(new Rng(4), 6), new Rng(5), {
        dim: 8,
        queueSize: 32,
        bnGroupSize: 4,
      });
      const teacher = new Teacher(encoder(new Rng(6), 12), 'train', 4);
      const data = new Rng(8);
      const out: number[][] = [];
      for (let s = 0; s < 2; s++) {
        const v1 = tf.tensor4d(data.normalArray(16 * 64), [16, 8, 8, 1]);
        const v2 = tf.tensor4d(data.normalArray(16 * 64), [16, 8, 8, 1]);
        const t = discoExtraLoss(teacher, v1, v2, { weight: 32 });
        const m = moco.step(v1, v2, 0.05, { extraLoss: t.extraLoss, microBatch });
        out.push([m.loss, m.parts.infonce!, m.parts.mse_v1!, m.parts.mse_v2!]);
        t.dispose();
        tf.dispose([v1, v2]);
      }
      out.push([...moco.query.params.get('conv1.weight').dataSync()]);
      out.push([...moco.query.params.get('bn1.running_var').dataSync()]);
      moco.dispose();
      teacher.dispose();
      return out.flat();
    };
    const whole = steps();
    for (const micro of [4, 8]) {
      const got = steps(micro);
      const worst = whole.reduce(
        (m, v, i) => Math.max(m, Math.abs(v - got[i]!) / (1 + Math.abs(v))),
        0,
      );
      expect(worst, `microBatch ${micro}`).toBeLessThan(1e-5);
    }
  });

  it('rejects bad settings by name', () => {
    const teacher = new Teacher(encoder(new Rng(9), 4));
    const x = tf.zeros([2, 8, 8, 1]) as tf.Tensor4D;
    expect(() => discoExtraLoss(teacher, x, x, { weight: -1 })).toThrow(/weight.*got -1/);
    expect(() => discoExtraLoss(teacher, x, x, { views: 'second' as never })).toThrow(
      /views must be 'both' or 'first', got 'second'/,
    );
    expect(() => new Teacher(encoder(new Rng(1), 4), 'frozen' as never)).toThrow(/bnMode/);
  });
});
