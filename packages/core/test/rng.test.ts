import { describe, expect, it } from 'vitest';
import { Rng } from '@disco/core';

describe('Rng', () => {
  it('repeats a stream for the same seed and restores a saved state', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const first = [a.nextUint32(), a.nextUint32(), a.nextUint32()];
    expect([b.nextUint32(), b.nextUint32(), b.nextUint32()]).toEqual(first);
    const state = JSON.parse(JSON.stringify(a.getState()));
    const next = [a.normal(), a.uniform(), a.int(1000)];
    const c = new Rng(7);
    c.setState(state);
    expect([c.normal(), c.uniform(), c.int(1000)]).toEqual(next);
  });

  it('draws normals with mean 0 and variance 1 and fair permutations', () => {
    const r = new Rng(1);
    const x = r.normalArray(100_000);
    const mean = x.reduce((s, v) => s + v, 0) / x.length;
    const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length;
    expect(Math.abs(mean)).toBeLessThan(0.02);
    expect(Math.abs(variance - 1)).toBeLessThan(0.02);
    const p = [...r.permutation(50)].sort((u, v) => u - v);
    expect(p).toEqual([...Array(50).keys()]);
  });

  it('gives different streams to different forks', () => {
    const r = new Rng(3);
    expect(r.fork('a').nextUint32()).not.toBe(r.fork('b').nextUint32());
  });
});
