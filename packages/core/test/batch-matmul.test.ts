import { describe, expect, it } from 'vitest';
import { registerFastBatchMatMul, Rng, tf } from '@disco/core';

describe('BatchMatMul on wasm with explicit transposes', () => {
  it('matches the cpu backend for every transpose combination and leaks nothing', async () => {
    const rng = new Rng(11);
    const a = rng.normalArray(2 * 5 * 7);
    const b = rng.normalArray(2 * 5 * 7);
    const t = (v: Float32Array, shape: [number, number, number]) =>
      tf.tensor3d(v.slice(0, shape[0] * shape[1] * shape[2]), shape);
    const cases: [boolean, boolean, [number, number, number], [number, number, number]][] = [
      [false, false, [2, 5, 7], [2, 7, 3]],
      [true, false, [2, 7, 5], [2, 7, 3]],
      [false, true, [2, 5, 7], [2, 3, 7]],
      [true, true, [2, 7, 5], [2, 3, 7]],
      // a b^T with b larger than a and the product: computed as (b a^T)^T.
      [false, true, [2, 1, 7], [2, 5, 7]],
    ];
    const expected: Float32Array[] = [];
    await tf.setBackend('cpu');
    for (const [ta, tb, sa, sb] of cases) {
      expected.push(tf.matMul(t(a, sa), t(b, sb), ta, tb).dataSync() as Float32Array);
    }
    registerFastBatchMatMul();
    await tf.setBackend('wasm');
    const before = tf.memory().numTensors;
    cases.forEach(([ta, tb, sa, sb], i) => {
      const got = tf.tidy(() => tf.matMul(t(a, sa), t(b, sb), ta, tb).dataSync());
      const err = Math.max(...got.map((v, j) => Math.abs(v - expected[i]![j]!)));
      expect(err).toBeLessThan(1e-5);
    });
    expect(tf.memory().numTensors).toBe(before);
    await tf.setBackend('cpu');
  });
});
