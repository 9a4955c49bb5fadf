import { describe, expect, it } from 'vitest';
import { tf } from '@disco/core';
import { adaptTeacherInput } from '@disco/distill';

describe('adaptTeacherInput', () => {
  it('un-normalises, repeats the gray channel, resizes and re-normalises', () => {
    // A 1-channel 2x2 view normalised with mean 0.5, std 0.25: pixels 0.25, 0.5, 0.75, 1.
    const pixels = [0.25, 0.5, 0.75, 1];
    const view = tf.tensor4d(
      pixels.map((p) => (p - 0.5) / 0.25),
      [1, 2, 2, 1],
    );
    const to = { mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.5], channels: 3, size: 4 };
    const y = adaptTeacherInput(view, { from: { mean: [0.5], std: [0.25] }, to });
    expect(y.shape).toEqual([1, 4, 4, 3]);
    const v = y.arraySync()[0]!;
    // Half-pixel bilinear 2 -> 4: output row/col 0 and 1 read source 0 and a 3:1 blend.
    const row = (a: number, b: number) => [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b];
    const up = [row(0.25, 0.5), row(0.75, 1)];
    const grid = [0, 1, 2, 3].map((i) =>
      [0, 1, 2, 3].map((j) => {
        const wy = [1, 0.75, 0.25, 0][i]!;
        return wy * up[0]![j]! + (1 - wy) * up[1]![j]!;
      }),
    );
    for (let i = 0; i < 4; i++) {
      for (let j = 0; j < 4; j++) {
        for (let c = 0; c < 3; c++) {
          expect(v[i]![j]![c]).toBeCloseTo((grid[i]![j]! - to.mean[c]!) / to.std[c]!, 5);
        }
      }
    }
    tf.dispose([view, y]);
  });

  it('is the identity when the formats agree, and refuses impossible channel counts', () => {
    const x = tf.randomNormal([2, 5, 5, 3]) as tf.Tensor4D;
    const n = { mean: [0.1, 0.2, 0.3], std: [0.5, 0.6, 0.7] };
    const same = adaptTeacherInput(x, { from: n, to: { ...n, channels: 3, size: 5 } });
    expect(Math.max(...(tf.abs(tf.sub(same, x)).dataSync() as Float32Array))).toBeLessThan(1e-6);
    const two = tf.zeros([1, 4, 4, 2]) as tf.Tensor4D;
    expect(() => adaptTeacherInput(two, { from: n, to: { ...n, channels: 3, size: 4 } })).toThrow(
      /views have 2 channels, the teacher takes 3; only a 1-channel view can be repeated/,
    );
    expect(() =>
      adaptTeacherInput(x, {
        from: { mean: [0, 0], std: [1, 1] },
        to: { ...n, channels: 3, size: 5 },
      }),
    ).toThrow(/mean has 2 values \[0, 0\] for 3 channels/);
    tf.dispose([x, same, two]);
  });
});
