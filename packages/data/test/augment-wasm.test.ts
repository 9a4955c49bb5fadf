import { describe, expect, it } from 'vitest';
import { Rng, tf } from '@disco/core';
import { mocoV2Augment, type AugmentConfig } from '@disco/data';
import { maxDiff } from './reference.js';

/** Every operation on often, so each kernel it needs runs on both backends. */
const BUSY: Partial<AugmentConfig> = {
  size: 24,
  flipP: 0.5,
  jitterP: 1,
  grayscaleP: 0.5,
  blurP: 1,
  blurReferenceSize: 24,
  mean: [0.4],
  std: [0.3],
};

async function augmentOn(backend: string, c: number): Promise<Float32Array> {
  await tf.setBackend(backend);
  await tf.ready();
  const x = tf.tensor4d(new Rng(c).uniformArray(6 * 28 * 28 * c), [6, 28, 28, c]);
  const out = mocoV2Augment(x, new Rng(77), BUSY);
  const values = (await out.data()) as Float32Array;
  tf.dispose([x, out]);
  return values;
}

describe('mocoV2Augment on wasm', () => {
  it('runs and matches the cpu backend for 1 and 3 channels', async () => {
    for (const c of [1, 3]) {
      const cpu = await augmentOn('cpu', c);
      const wasm = await augmentOn('wasm', c);
      expect(tf.getBackend()).toBe('wasm');
      expect(wasm.length).toBe(6 * 24 * 24 * c);
      expect(maxDiff(wasm, cpu)).toBeLessThan(1e-4);
    }
  });

  it('leaks no tensors on wasm over 20 calls', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor4d(new Rng(3).uniformArray(4 * 20 * 20 * 3), [4, 20, 20, 3]);
    const rng = new Rng(1);
    mocoV2Augment(x, rng, BUSY).dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) mocoV2Augment(x, rng, BUSY).dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});
