import { beforeAll, describe, expect, it } from 'vitest';
import {
  BatchNorm,
  Conv2d,
  Params,
  Rng,
  Sequential,
  bindEncoder,
  globalAvgPool,
  tf,
  type Encoder,
  type Module,
} from '@disco/core';
import { extractFeatures } from '@disco/eval';

class Relu implements Module {
  init(): void {}
  apply(_p: Params, x: tf.Tensor): tf.Tensor {
    return tf.relu(x);
  }
}

class Pool implements Module<tf.Tensor4D, tf.Tensor2D> {
  init(): void {}
  apply(_p: Params, x: tf.Tensor4D): tf.Tensor2D {
    return globalAvgPool(x);
  }
}

/** conv 3x3 stride 2 (3 -> 6) -> BN -> ReLU -> global average pool: [b, h, w, 3] -> [b, 6]. */
function tinyEncoder(outDim = 6): Encoder {
  const net = new Sequential<tf.Tensor4D, tf.Tensor2D>([
    new Conv2d('conv1', { inChannels: 3, outChannels: 6, kernelSize: 3, stride: 2 }),
    new BatchNorm('bn1', { channels: 6 }),
    new Relu(),
    new Pool(),
  ]);
  const enc = bindEncoder(net, outDim, new Rng(7));
  // Running statistics far from (0, 1), so eval mode differs from training mode.
  const r = new Rng(8);
  tf.tidy(() => {
    enc.params.get('bn1.running_mean').assign(tf.tensor1d(r.normalArray(6, 0, 0.3)));
    enc.params.get('bn1.running_var').assign(tf.tensor1d(r.uniformArray(6, 0.2, 3)));
    enc.params.get('bn1.bias').assign(tf.tensor1d(r.normalArray(6, 0.5, 0.2)));
  });
  return enc;
}

const N = 11;
const H = 10;
const W = 8;
const images = Uint8Array.from({ length: N * H * W * 3 }, (_, i) => (i * 37 + (i >> 5)) % 256);
const dims = { count: N, height: H, width: W, channels: 3 };

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('extractFeatures', () => {
  it('equals one eval-mode pass over the whole set for any batch size, no leak', async () => {
    const enc = tinyEncoder();
    const expected = tf.tidy(() => {
      const x = tf.div(tf.tensor4d(Float32Array.from(images), [N, H, W, 3]), 255) as tf.Tensor4D;
      return enc.apply(x, { training: false });
    });
    const want = expected.dataSync();
    expected.dispose();
    const meanBefore = enc.params.get('bn1.running_mean').dataSync().slice();
    const before = tf.memory().numTensors;
    for (const batchSize of [1, 4, 256]) {
      const got = await extractFeatures(enc, images, { ...dims, batchSize });
      expect(got.length).toBe(N * 6);
      for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 5);
    }
    expect(tf.memory().numTensors).toBe(before);
    // Eval mode: BatchNorm's running statistics are read, never updated.
    expect([...enc.params.get('bn1.running_mean').dataSync()]).toEqual([...meanBefore]);
    // And they matter: the features differ from the training-mode (batch statistics) output.
    const train = tf.tidy(() =>
      enc.apply(tf.div(tf.tensor4d(Float32Array.from(images), [N, H, W, 3]), 255) as tf.Tensor4D, {
        training: true,
      }),
    );
    const trainVals = train.dataSync();
    train.dispose();
    expect(Math.max(...want.map((v, i) => Math.abs(v - trainVals[i]!)))).toBeGreaterThan(0.05);
  });

  it('scales to [0, 1], then runs preprocess (normalise, resize), then the encoder', async () => {
    const enc = tinyEncoder();
    const preprocess = (x: tf.Tensor4D): tf.Tensor4D =>
      tf.image.resizeBilinear(tf.div(tf.sub(x, 0.45), 0.22) as tf.Tensor4D, [16, 16]);
    const expected = tf.tidy(() => {
      const x = tf.div(tf.tensor4d(Float32Array.from(images), [N, H, W, 3]), 255) as tf.Tensor4D;
      return enc.apply(preprocess(x), { training: false });
    });
    const want = expected.dataSync();
    expected.dispose();
    const before = tf.memory().numTensors;
    let calls = 0;
    const seen: number[] = [];
    const got = await extractFeatures(enc, images, {
      ...dims,
      batchSize: 5,
      preprocess: (x) => {
        calls++;
        expect(x.shape).toEqual([calls < 3 ? 5 : 1, H, W, 3]);
        expect(x.max().dataSync()[0]).toBeLessThanOrEqual(1);
        return preprocess(x);
      },
      onProgress: (done, count) => seen.push(done, count),
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(calls).toBe(3);
    expect(seen).toEqual([5, N, 10, N, 11, N]);
    for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 5);
  });

  it('rejects a wrong image buffer and an encoder whose output is not [b, outDim]', async () => {
    const enc = tinyEncoder();
    await expect(extractFeatures(enc, images.subarray(1), dims)).rejects.toThrow(
      /extractFeatures: images must hold .* = 11 x 10 x 8 x 3 = 2640 bytes, got 2639/,
    );
    await expect(extractFeatures(enc, images, { ...dims, batchSize: 0 })).rejects.toThrow(
      /extractFeatures: batchSize must be an integer >= 1, got 0/,
    );
    const before = tf.memory().numTensors;
    await expect(extractFeatures(tinyEncoder(5), images, dims)).rejects.toThrow(
      /extractFeatures: the encoder returned \[11,6\] for a batch of 11, expected \[11, 5\]/,
    );
    // The failed call freed its batch; only the second encoder's 5 parameters remain.
    expect(tf.memory().numTensors).toBe(before + 5);
  });
});
