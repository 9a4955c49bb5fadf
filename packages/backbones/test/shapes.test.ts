/**
 * Options and shapes: small stems, width multipliers and one-channel inputs at 28x28 and 32x32,
 * the stem layers they change, batch handling (eval-mode independence, ghost BN groups), the
 * PyTorch max-pool padding, and the errors for bad names, options and inputs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Params, Rng, tf } from '@disco/core';
import {
  buildBackboneEncoder,
  createBackbone,
  makeDivisible,
  maxPool3x3s2,
  scaleResNetWidth,
} from '@disco/backbones';
import type { BackboneOptions } from '@disco/backbones';
import { maxAbs, maxAbsDiff, torchShape } from './helpers.js';

/** A deterministic NHWC batch in [-1.5, 1.5]. */
function images(n: number, size: number, channels: number): tf.Tensor4D {
  return tf.tidy(() => {
    const i = tf.range(0, n * size * size * channels).reshape([n, size, size, channels]);
    return tf.mul(tf.sin(tf.mul(i, 0.37)), 1.5) as tf.Tensor4D;
  });
}

interface ShapeCase {
  arch: string;
  opts: BackboneOptions;
  size: number;
  /** [h', w', channels] of the last feature map. */
  map: [number, number, number];
  featureDim: number;
}

const CASES: ShapeCase[] = [
  { arch: 'resnet18', opts: {}, size: 32, map: [1, 1, 512], featureDim: 512 },
  {
    arch: 'resnet18',
    opts: { smallStem: true, widthMultiplier: 0.25 },
    size: 32,
    map: [4, 4, 128],
    featureDim: 128,
  },
  {
    arch: 'resnet18',
    opts: { smallStem: true, inChannels: 1, widthMultiplier: 0.5 },
    size: 28,
    map: [4, 4, 256],
    featureDim: 256,
  },
  {
    arch: 'resnet34',
    opts: { inChannels: 1, widthMultiplier: 0.125 },
    size: 28,
    map: [1, 1, 64],
    featureDim: 64,
  },
  {
    arch: 'resnet50',
    opts: { widthMultiplier: 0.5 },
    size: 32,
    map: [1, 1, 1024],
    featureDim: 1024,
  },
  {
    arch: 'resnet50',
    opts: { widthMultiplier: 0.25, smallStem: true, inChannels: 1 },
    size: 28,
    map: [4, 4, 512],
    featureDim: 512,
  },
  {
    arch: 'wide_resnet50_2',
    opts: { widthMultiplier: 0.25 },
    size: 32,
    map: [1, 1, 512],
    featureDim: 512,
  },
  {
    arch: 'mobilenet_v3_small',
    opts: { smallStem: true, inChannels: 1 },
    size: 28,
    map: [2, 2, 576],
    featureDim: 576,
  },
  {
    arch: 'mobilenet_v3_small',
    opts: { widthMultiplier: 0.5, output: 'head' },
    size: 32,
    map: [1, 1, 288],
    featureDim: 512,
  },
  {
    arch: 'mobilenet_v3_large',
    opts: { smallStem: true, widthMultiplier: 0.75, output: 'head' },
    size: 32,
    map: [2, 2, 720],
    featureDim: 960,
  },
  {
    arch: 'mobilenet_v3_large',
    opts: { inChannels: 1 },
    size: 28,
    map: [1, 1, 960],
    featureDim: 960,
  },
];

// Shapes do not depend on the backend; wasm runs these convolutions several times faster than
// cpu (parity.test.ts checks both backends' numbers).
beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
});

describe('output shapes', () => {
  it.each(CASES)('$arch $opts at $size x $size', ({ arch, opts, size, map, featureDim }) => {
    const net = createBackbone(arch, opts);
    const params = new Params();
    net.init(params, new Rng(3));
    const channels = opts.inChannels ?? 3;
    try {
      expect(net.featureDim).toBe(featureDim);
      expect(net.pooledDim).toBe(map[2]);
      const before = tf.memory().numTensors;
      tf.tidy(() => {
        const x = images(2, size, channels);
        expect(net.applyFeatureMap(params, x, { training: false }).shape).toEqual([2, ...map]);
        const y = net.apply(params, x, { training: true });
        expect(y.shape).toEqual([2, featureDim]);
        const v = y.dataSync();
        expect(v.every(Number.isFinite)).toBe(true);
        // The two samples differ: the input reaches the output.
        expect(maxAbsDiff(y.slice([0, 0], [1, -1]), y.slice([1, 0], [1, -1]))).toBeGreaterThan(
          1e-4 * maxAbs(y),
        );
      });
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      params.dispose();
    }
  });

  it('the stem options change exactly the stem', () => {
    const shapes = (arch: string, opts: BackboneOptions): Map<string, number[]> => {
      const params = new Params();
      createBackbone(arch, opts).init(params, new Rng(0));
      const out = new Map(
        params.names().map((n) => [n, torchShape(params.get(n).shape, params.layout(n))]),
      );
      params.dispose();
      return out;
    };
    expect(shapes('resnet18', { smallStem: true }).get('conv1.weight')).toEqual([64, 3, 3, 3]);
    const gray = shapes('resnet18', { inChannels: 1, widthMultiplier: 0.25 });
    expect(gray.get('conv1.weight')).toEqual([16, 1, 7, 7]);
    const half = shapes('resnet50', { widthMultiplier: 0.5 });
    expect(half.get('conv1.weight')).toEqual([32, 3, 7, 7]);
    expect(half.get('layer1.0.conv1.weight')).toEqual([32, 32, 1, 1]);
    expect(half.get('layer1.0.downsample.0.weight')).toEqual([128, 32, 1, 1]);
    expect(half.get('layer4.2.conv3.weight')).toEqual([1024, 256, 1, 1]);
    // V1.5: the stride-2 3x3 conv; wide: inner width twice the base width.
    const wide = shapes('wide_resnet50_2', { widthMultiplier: 0.25 });
    expect(wide.get('layer2.0.conv1.weight')).toEqual([64, 64, 1, 1]);
    expect(wide.get('layer2.0.conv2.weight')).toEqual([64, 64, 3, 3]);
    expect(wide.get('layer2.0.conv3.weight')).toEqual([128, 64, 1, 1]);
    const small = shapes('mobilenet_v3_small', { smallStem: true, inChannels: 1 });
    expect(small.get('features.0.0.weight')).toEqual([16, 1, 3, 3]);
    expect(small.get('features.1.block.0.0.weight')).toEqual([16, 1, 3, 3]);
    expect(small.get('features.4.block.2.fc1.weight')).toEqual([24, 96, 1, 1]);
  });

  it('width rules: ResNet max(8, round(w m)), MobileNetV3 makeDivisible(w m, 8)', () => {
    expect([64, 128, 256, 512].map((w) => scaleResNetWidth(w, 0.5))).toEqual([32, 64, 128, 256]);
    expect([64, 128].map((w) => scaleResNetWidth(w, 0.1))).toEqual([8, 13]);
    expect(scaleResNetWidth(64, 1.3)).toBe(83);
    // torchvision's _make_divisible: nearest multiple of 8, never below 8 nor 10% under.
    expect([16, 72, 88, 96, 120, 1024].map((c) => makeDivisible(c * 0.5))).toEqual([
      8, 40, 48, 48, 64, 512,
    ]);
    expect(makeDivisible(16 * 0.75)).toBe(16);
    expect(makeDivisible(3)).toBe(8);
    expect(makeDivisible(92)).toBe(96);
    expect(makeDivisible(84)).toBe(88);
    expect(makeDivisible(68)).toBe(72); // int(68 + 4) // 8 * 8 = 72
    expect(makeDivisible(67.9)).toBe(64); // 71.9 -> 64, which is within 10% of 67.9
    expect(makeDivisible(17.6, 16)).toBe(16);
  });
});

describe('batches', () => {
  it.each(['resnet18', 'mobilenet_v3_small'])(
    '%s: eval mode treats samples independently; ghost BN groups normalise separately',
    (arch) => {
      const net = createBackbone(arch, { widthMultiplier: 0.25, smallStem: true });
      const params = new Params();
      net.init(params, new Rng(5));
      try {
        tf.tidy(() => {
          const x = images(4, 32, 3); // last stage 2x2: 8 values per BN group and channel
          const both = net.apply(params, x, { training: false });
          const alone = net.apply(params, x.slice([2, 0, 0, 0], [1, -1, -1, -1]), {
            training: false,
          });
          expect(maxAbsDiff(both.slice([2, 0], [1, -1]), alone)).toBeLessThan(1e-5 * maxAbs(alone));

          // Training mode, groups of 2: each half sees only its own batch statistics.
          const saved = params.snapshot();
          const ghost = net.apply(params, x, { training: true, bnGroupSize: 2 });
          params.load(saved);
          const half = net.apply(params, x.slice([2, 0, 0, 0], [2, -1, -1, -1]), {
            training: true,
          });
          for (const t of saved.values()) t.dispose();
          expect(maxAbsDiff(ghost.slice([2, 0], [2, -1]), half)).toBeLessThan(1e-4 * maxAbs(half));
          // And a whole-batch pass differs from the grouped one.
          const whole = net.apply(params, x, { training: true });
          expect(maxAbsDiff(whole, ghost)).toBeGreaterThan(1e-3 * maxAbs(ghost));
        });
      } finally {
        params.dispose();
      }
    },
  );
});

// On cpu: wasm's convolution gradient kernels are core's (registerWasmTrainingKernels).
describe('gradients', () => {
  beforeAll(async () => {
    expect(await tf.setBackend('cpu')).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('wasm');
  });

  it.each([
    ['resnet18', {}, []],
    ['mobilenet_v3_small', {}, ['classifier.0.weight', 'classifier.0.bias']],
    ['mobilenet_v3_small', { output: 'head' }, []],
  ] as const)('%s %o: every parameter used by apply gets a gradient', (arch, opts, unused) => {
    const net = createBackbone(arch, { widthMultiplier: 0.25, smallStem: true, ...opts });
    const params = new Params();
    net.init(params, new Rng(11));
    try {
      const vars = params.parameters();
      const { value, grads } = tf.variableGrads(
        () => tf.sum(tf.square(net.apply(params, images(2, 16, 3), { training: true }))),
        vars,
      );
      value.dispose();
      const names = params.parameterNames();
      const missing = names.filter((_, i) => {
        const g = grads[vars[i]!.name];
        return !g || tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]!) === 0;
      });
      expect(missing).toEqual(unused);
      for (const g of Object.values(grads)) g.dispose();
    } finally {
      params.dispose();
    }
  });
});

describe('max-pool padding as PyTorch (-inf, never 0)', () => {
  /** MaxPool2d(3, 2, 1) by hand over a [1, h, w, 1] array. */
  function reference(v: Float32Array, h: number, w: number): number[] {
    const out: number[] = [];
    const oh = Math.floor((h + 2 - 3) / 2) + 1;
    const ow = Math.floor((w + 2 - 3) / 2) + 1;
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        let m = -Infinity;
        for (let di = 0; di < 3; di++) {
          for (let dj = 0; dj < 3; dj++) {
            const r = 2 * i - 1 + di;
            const c = 2 * j - 1 + dj;
            if (r >= 0 && r < h && c >= 0 && c < w) m = Math.max(m, v[r * w + c]!);
          }
        }
        out.push(m);
      }
    }
    return out;
  }

  let previous = 'cpu';
  beforeAll(() => {
    previous = tf.getBackend();
  });
  afterAll(async () => {
    await tf.setBackend(previous);
  });

  it.each(['cpu', 'wasm'])('on %s, odd and even sizes, all-negative input', async (backend) => {
    expect(await tf.setBackend(backend)).toBe(true);
    for (const [h, w] of [
      [7, 7],
      [8, 6],
    ] as const) {
      const values = new Float32Array(h * w).map((_, i) => -1 - ((i * 7919) % 13) / 13);
      const y = tf.tidy(() => maxPool3x3s2(tf.tensor4d(values, [1, h, w, 1])));
      expect(y.shape).toEqual([1, Math.floor((h - 1) / 2) + 1, Math.floor((w - 1) / 2) + 1, 1]);
      const got = [...y.dataSync()];
      y.dispose();
      expect(got.every((v) => v < 0)).toBe(true); // zero padding would put 0 on every border
      const want = reference(values, h, w);
      got.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 6));
    }
  });
});

describe('errors and the encoder shortcut', () => {
  it('unknown names list the known ones', () => {
    expect(() => createBackbone('resnet19')).toThrow(
      /createBackbone: unknown backbone 'resnet19'; known: resnet18, resnet34, .*_large, efficientnet_b0, efficientnet_b1$/,
    );
  });

  it.each([
    [{ widthMultiplier: 0 }, /widthMultiplier must be a finite number > 0, got 0/],
    [{ widthMultiplier: Number.NaN }, /widthMultiplier must be a finite number > 0, got NaN/],
    [{ inChannels: 1.5 }, /inChannels must be a positive integer, got 1.5/],
    [{ withClassifier: 0 }, /withClassifier must be a positive integer .*got 0/],
    [{ smallStem: 'yes' }, /smallStem must be true or false, got yes/],
    [{ output: 'logits' }, /output must be 'pooled' or 'head', got logits/],
    [{ widthMult: 0.5 }, /unknown option 'widthMult'; the options are inChannels, widthMultiplier/],
  ])('resnet18 %o is refused', (opts, message) => {
    expect(() => createBackbone('resnet18', opts as BackboneOptions)).toThrow(message);
  });

  it("output 'head' is MobileNetV3's only", () => {
    expect(() => createBackbone('resnet50', { output: 'head' })).toThrow(
      /ResNet\('resnet50'\): output 'head' exists only for .*MobileNetV3/,
    );
  });

  it('a wrong input and a missing classifier are named', () => {
    const net = createBackbone('mobilenet_v3_small', { widthMultiplier: 0.25 });
    const params = new Params();
    net.init(params, new Rng(0));
    try {
      tf.tidy(() => {
        expect(() => net.apply(params, images(1, 16, 1), { training: false })).toThrow(
          'mobilenet_v3_small.apply: input must be float32 [batch, height, width, 3] (NHWC), ' +
            'got float32 [1,16,16,1]',
        );
        expect(() => net.applyLogits(params, images(1, 16, 3), { training: false })).toThrow(
          /mobilenet_v3_small.applyLogits: built without a classifier; pass withClassifier/,
        );
        expect(net.applyAll(params, images(1, 16, 3), { training: false }).logits).toBeUndefined();
      });
    } finally {
      params.dispose();
    }
  });

  it('buildBackboneEncoder binds a fresh or a given parameter set', () => {
    const enc = buildBackboneEncoder(
      'resnet18',
      { widthMultiplier: 0.25, smallStem: true },
      new Rng(9),
    );
    try {
      expect(enc.outDim).toBe(128);
      expect(enc.net.arch).toBe('resnet18');
      expect(enc.params.countParameters()).toBeGreaterThan(0);
      const again = buildBackboneEncoder(
        'resnet18',
        { widthMultiplier: 0.25, smallStem: true },
        enc.params,
      );
      expect(again.params).toBe(enc.params);
      tf.tidy(() => {
        const x = images(2, 16, 3);
        const a = enc.apply(x, { training: false });
        expect(a.shape).toEqual([2, 128]);
        expect(maxAbsDiff(a, again.apply(x, { training: false }))).toBe(0);
      });
    } finally {
      enc.params.dispose();
    }
  });
});
