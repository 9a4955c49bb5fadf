import { describe, expect, it } from 'vitest';
import { Rng, tf } from '@disco/core';
import { BatchLoader, toFloatTensor, type Batch, type ImageSet } from '@disco/data';

/** 103 images of 2x2x1 where every pixel of image i is i, label i % 10. */
function indexedSet(count = 103): ImageSet {
  const images = new Uint8Array(count * 4);
  for (let i = 0; i < count; i++) images.fill(i, i * 4, (i + 1) * 4);
  const labels = Uint8Array.from({ length: count }, (_, i) => i % 10);
  return { images, labels, count, height: 2, width: 2, channels: 1, classNames: [] };
}

function indicesOf(batches: Iterable<Batch>): number[][] {
  return [...batches].map((b) => [...b.indices]);
}

describe('BatchLoader', () => {
  const data = indexedSet();

  it('covers every index once per epoch, with matching images and labels', () => {
    const loader = new BatchLoader(data, { batchSize: 10, rng: 5 });
    expect(loader.batchesPerEpoch).toBe(11);
    for (const epoch of [0, 1]) {
      const batches = [...loader.epoch(epoch)];
      expect(batches.map((b) => b.size)).toEqual([...new Array(10).fill(10), 3]);
      const all = batches.flatMap((b) => [...b.indices]);
      expect([...all].sort((a, b) => a - b)).toEqual([...Array(103).keys()]);
      expect(all).not.toEqual([...Array(103).keys()]);
      for (const b of batches) {
        b.indices.forEach((src, k) => {
          expect([...b.images.subarray(k * 4, (k + 1) * 4)]).toEqual([src, src, src, src]);
          expect(b.labels[k]).toBe(src % 10);
        });
      }
    }
  });

  it('drops the short last batch with dropLast', () => {
    const loader = new BatchLoader(data, { batchSize: 10, dropLast: true, rng: 5 });
    expect(loader.batchesPerEpoch).toBe(10);
    const all = indicesOf(loader.epoch(3)).flat();
    expect(all.length).toBe(100);
    expect(new Set(all).size).toBe(100);
  });

  it('repeats its order for a seed, and differs across seeds and epochs', () => {
    const a = new BatchLoader(data, { batchSize: 16, rng: 11 });
    const b = new BatchLoader(data, { batchSize: 16, rng: new Rng(11) });
    const c = new BatchLoader(data, { batchSize: 16, rng: 12 });
    expect(indicesOf(b.epoch(2))).toEqual(indicesOf(a.epoch(2)));
    expect([...c.order(2)]).not.toEqual([...a.order(2)]);
    expect([...a.order(1)]).not.toEqual([...a.order(2)]);
  });

  it('leaves the caller rng where it was', () => {
    const rng = new Rng(3);
    const before = rng.getState();
    new BatchLoader(data, { batchSize: 8, rng });
    expect(rng.getState()).toEqual(before);
  });

  it('resumes mid-epoch with the order of an unbroken run', () => {
    const unbroken = new BatchLoader(data, { batchSize: 9, rng: 21 });
    const seen: number[][] = [];
    for (let e = 0; e < 3; e++) seen.push(...indicesOf(unbroken.epoch(e)));

    // A fresh process: a new loader from the same seed, resumed at epoch 1, batch 4.
    const resumed = new BatchLoader(data, { batchSize: 9, rng: 21 });
    const rest = [...indicesOf(resumed.epoch(1, 4)), ...indicesOf(resumed.epoch(2))];
    const perEpoch = unbroken.batchesPerEpoch;
    expect(rest).toEqual(seen.slice(perEpoch + 4));
    expect([...resumed.batch(2, 7).indices]).toEqual(seen[2 * perEpoch + 7]);
  });

  it('keeps the stored order without shuffle, as views', () => {
    const loader = new BatchLoader(data, { batchSize: 50, shuffle: false });
    const batches = [...loader.epoch(0)];
    expect(batches.map((b) => b.size)).toEqual([50, 50, 3]);
    expect([...batches[1]!.indices]).toEqual([...Array(50).keys()].map((i) => i + 50));
    expect(batches[1]!.images.buffer).toBe(data.images.buffer);
    expect(batches[2]!.images[0]).toBe(100);
  });

  it('refuses bad settings, naming them', () => {
    expect(() => new BatchLoader(data, { batchSize: 0, rng: 1 })).toThrow(/batchSize.*got 0/);
    expect(() => new BatchLoader(data, { batchSize: 4 })).toThrow(/rng.*required/);
    expect(() => new BatchLoader(data, { batchSize: 200, dropLast: true, rng: 1 })).toThrow(
      /batchSize \(200\).*count \(103\)/,
    );
    const bad = { ...data, count: 104 };
    expect(() => new BatchLoader(bad, { batchSize: 4, rng: 1 })).toThrow(/416 bytes, got 412/);
    const loader = new BatchLoader(data, { batchSize: 10, rng: 1 });
    expect(() => loader.batch(0, 11)).toThrow(/batchIndex must be an integer in \[0, 11\), got 11/);
    expect(() => loader.order(-1)).toThrow(/epoch must be a non-negative integer, got -1/);
  });
});

describe('toFloatTensor', () => {
  it('scales bytes to [0, 1] in NHWC shape', () => {
    const bytes = Uint8Array.from([0, 51, 102, 255, 1, 254]);
    const t = toFloatTensor(bytes, 1, 1, 2, 3);
    expect(t.shape).toEqual([1, 1, 2, 3]);
    expect(t.dtype).toBe('float32');
    const expected = [0, 0.2, 0.4, 1, 1 / 255, 254 / 255];
    [...t.dataSync()].forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 7));
    t.dispose();
    expect(() => toFloatTensor(bytes, 2, 1, 2, 3)).toThrow(/12 bytes, got 6/);
    expect(tf.memory().numTensors).toBe(0);
  });
});
