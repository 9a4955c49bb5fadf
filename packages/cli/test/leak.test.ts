import { describe, expect, it } from 'vitest';
import { initBackend, Rng, tf } from '@disco/core';
import {
  FASHION_MNIST_MEAN,
  FASHION_MNIST_STD,
  loadFashionMnist,
  mocoV2Augment,
  toFloatTensor,
} from '@disco/data';
import { discoExtraLoss, Teacher } from '@disco/distill';
import { MoCo } from '@disco/moco';
import { buildEncoder } from '@disco/cli';

describe('a DisCo training loop', () => {
  it('keeps tf.memory().numTensors flat over 50 steps on wasm', async () => {
    await initBackend({ backend: 'wasm' });
    const data = loadFashionMnist({ split: 'train', limit: 32 });
    const student = buildEncoder(
      {
        arch: 'mobilenet_v3_small',
        backbone: { inChannels: 1, widthMultiplier: 0.5 },
        hiddenDim: 64,
        dim: 32,
      },
      new Rng(0),
    );
    const teacherNet = buildEncoder(
      {
        arch: 'resnet18',
        backbone: { inChannels: 1, widthMultiplier: 0.25 },
        hiddenDim: 64,
        dim: 32,
      },
      new Rng(1),
    );
    const teacher = new Teacher(teacherNet.encoder, 'train', 16);
    teacherNet.encoder.params.dispose();
    const moco = new MoCo(student.encoder, new Rng(2), { dim: 32, queueSize: 64, bnGroupSize: 16 });
    const aug = new Rng(3);
    const augment = { mean: FASHION_MNIST_MEAN, std: FASHION_MNIST_STD };
    const step = () => {
      const x = toFloatTensor(data.images, 32, 28, 28, 1);
      const v1 = mocoV2Augment(x, aug, augment);
      const v2 = mocoV2Augment(x, aug, augment);
      const d = discoExtraLoss(teacher, v1, v2);
      const m = moco.step(v1, v2, 0.01, { extraLoss: d.extraLoss });
      d.dispose();
      tf.dispose([x, v1, v2]);
      return m;
    };
    step();
    step();
    const before = tf.memory().numTensors;
    let last = step();
    for (let i = 0; i < 47; i++) last = step();
    expect(tf.memory().numTensors).toBe(before);
    expect(Number.isFinite(last.loss)).toBe(true);
    expect(last.parts.mse_v2).toBeGreaterThan(0);
    await tf.setBackend('cpu');
  });
});
