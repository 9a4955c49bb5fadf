/**
 * Parity of DisCo's wasm training kernels with tfjs's `cpu` backend: each kernel on seeded
 * inputs over strides 1/2/3, 'same' / 'valid' / explicit / numeric padding, odd sizes,
 * 1x1 to 5x5 filters, depthwise dilation and channel multipliers; then the gradients of a
 * small conv -> depthwise -> conv network, and a leak check over repeated gradient calls.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng, registerWasmTrainingKernels, tf } from '@disco/core';
import { nativeWasmConv2DBackpropInput } from '../src/kernels/index.js';

type Shape4 = [number, number, number, number];
type Pad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;

const rng = new Rng(20220807);

function randn(shape: number[]): Float32Array {
  return rng.normalArray(shape.reduce((a, b) => a * b, 1));
}

/** max |a - b| / max |b|: the error relative to the reference's scale. */
function relErr(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / Math.max(scale, 1e-30);
}

/** Runs `kernel` with fresh tensors of `values` on `backend`; returns values and shape. */
async function runOn(
  backend: 'cpu' | 'wasm',
  kernel: string,
  values: Record<string, { data: Float32Array; shape: number[] }>,
  attrs: object,
): Promise<{ data: Float32Array; shape: number[] }> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const inputs: Record<string, tf.Tensor> = {};
    for (const [k, v] of Object.entries(values)) inputs[k] = tf.tensor(v.data, v.shape);
    const out = tf.engine().runKernel(kernel, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;
    return { data: out.dataSync() as Float32Array, shape: out.shape };
  });
}

/** The dilated-by-`d` version of a filter `[kh, kw, C, M]`, zeros between taps. */
function dilateFilter(w: Float32Array, shape: Shape4, [dh, dw]: [number, number]) {
  const [kh, kw, c, m] = shape;
  const eh = (kh - 1) * dh + 1;
  const ew = (kw - 1) * dw + 1;
  const out = new Float32Array(eh * ew * c * m);
  const plane = c * m;
  for (let a = 0; a < kh; a++) {
    for (let b = 0; b < kw; b++) {
      const src = (a * kw + b) * plane;
      out.set(w.subarray(src, src + plane), (a * dh * ew + b * dw) * plane);
    }
  }
  return { data: out, shape: [eh, ew, c, m] as Shape4 };
}

function outShape(
  x: Shape4,
  f: Shape4,
  strides: number | [number, number],
  dilations: number | [number, number],
  pad: Pad,
  depthwise: boolean,
  round?: 'floor' | 'round' | 'ceil',
): Shape4 {
  const info = tf.backend_util.computeConv2DInfo(x, f, strides, dilations, pad, round, depthwise);
  return info.outShape as Shape4;
}

interface ConvCase {
  name: string;
  x: Shape4;
  f: Shape4;
  strides: number | [number, number];
  pad: Pad;
  round?: 'floor' | 'round' | 'ceil';
}

const convCases: ConvCase[] = [
  { name: '3x3 s1 same b2', x: [2, 7, 7, 3], f: [3, 3, 3, 4], strides: 1, pad: 'same' },
  { name: '3x3 s2 same even', x: [2, 8, 8, 3], f: [3, 3, 3, 5], strides: 2, pad: 'same' },
  { name: '3x3 s2 same odd b1', x: [1, 9, 9, 4], f: [3, 3, 4, 3], strides: 2, pad: 'same' },
  { name: '3x3 s2 valid drops a row', x: [2, 9, 8, 3], f: [3, 3, 3, 4], strides: 2, pad: 'valid' },
  { name: '5x5 s2 valid odd', x: [1, 11, 10, 2], f: [5, 5, 2, 3], strides: 2, pad: 'valid' },
  { name: '5x5 s1 same', x: [2, 9, 9, 2], f: [5, 5, 2, 3], strides: 1, pad: 'same' },
  {
    name: '3x3 s3 explicit',
    x: [2, 10, 11, 3],
    f: [3, 3, 3, 2],
    strides: 3,
    pad: [
      [0, 0],
      [1, 2],
      [2, 0],
      [0, 0],
    ],
  },
  { name: '3x3 s3 same', x: [1, 10, 8, 2], f: [3, 3, 2, 3], strides: 3, pad: 'same' },
  { name: '1x1 s2 same', x: [2, 8, 7, 4], f: [1, 1, 4, 6], strides: 2, pad: 'same' },
  {
    name: '2x2 s3 valid (phases without taps)',
    x: [1, 9, 8, 2],
    f: [2, 2, 2, 3],
    strides: 3,
    pad: 'valid',
  },
  {
    name: '1x1 s2 explicit pad 1',
    x: [2, 7, 8, 3],
    f: [1, 1, 3, 2],
    strides: 2,
    pad: [
      [0, 0],
      [1, 1],
      [1, 0],
      [0, 0],
    ],
  },
  { name: '1x1 s2 valid odd, Ci > Co', x: [2, 7, 9, 6], f: [1, 1, 6, 4], strides: 2, pad: 'valid' },
  {
    name: '1x1 s2 pad only after',
    x: [1, 8, 7, 3],
    f: [1, 1, 3, 2],
    strides: 2,
    pad: [
      [0, 0],
      [0, 1],
      [0, 2],
      [0, 0],
    ],
  },
  { name: '1x1 s1 valid', x: [1, 5, 6, 3], f: [1, 1, 3, 4], strides: 1, pad: 'valid' },
  { name: '3x3 s2 pad 1', x: [1, 9, 9, 2], f: [3, 3, 2, 2], strides: 2, pad: 1 },
  {
    name: '3x3 s2 pad 1 floor',
    x: [2, 10, 10, 2],
    f: [3, 3, 2, 3],
    strides: 2,
    pad: 1,
    round: 'floor',
  },
  { name: '3x3 s[1,2] same', x: [2, 7, 8, 3], f: [3, 3, 3, 2], strides: [1, 2], pad: 'same' },
  { name: '3x3 s[2,1] valid', x: [1, 9, 6, 2], f: [3, 3, 2, 2], strides: [2, 1], pad: 'valid' },
];

interface DepthwiseCase {
  name: string;
  x: Shape4;
  f: Shape4;
  strides: number | [number, number];
  dilations: [number, number];
  pad: Pad;
}

const depthwiseCases: DepthwiseCase[] = [
  {
    name: '3x3 s1 same',
    x: [2, 7, 7, 3],
    f: [3, 3, 3, 1],
    strides: 1,
    dilations: [1, 1],
    pad: 'same',
  },
  {
    name: '3x3 s2 same odd',
    x: [2, 9, 9, 4],
    f: [3, 3, 4, 1],
    strides: 2,
    dilations: [1, 1],
    pad: 'same',
  },
  {
    name: '3x3 s2 valid M=2',
    x: [1, 8, 9, 3],
    f: [3, 3, 3, 2],
    strides: 2,
    dilations: [1, 1],
    pad: 'valid',
  },
  {
    name: '5x5 s2 same',
    x: [2, 10, 10, 2],
    f: [5, 5, 2, 1],
    strides: 2,
    dilations: [1, 1],
    pad: 'same',
  },
  {
    name: '5x5 s1 same M=3',
    x: [1, 8, 8, 2],
    f: [5, 5, 2, 3],
    strides: 1,
    dilations: [1, 1],
    pad: 'same',
  },
  {
    name: '3x3 s3 explicit',
    x: [2, 11, 10, 2],
    f: [3, 3, 2, 1],
    strides: 3,
    dilations: [1, 1],
    pad: [
      [0, 0],
      [2, 1],
      [0, 2],
      [0, 0],
    ],
  },
  {
    name: '1x1 s2 valid',
    x: [2, 6, 7, 4],
    f: [1, 1, 4, 1],
    strides: 2,
    dilations: [1, 1],
    pad: 'valid',
  },
  { name: '3x3 s2 pad 1', x: [1, 9, 9, 3], f: [3, 3, 3, 1], strides: 2, dilations: [1, 1], pad: 1 },
  {
    name: '3x3 d2 same',
    x: [2, 9, 9, 3],
    f: [3, 3, 3, 1],
    strides: 1,
    dilations: [2, 2],
    pad: 'same',
  },
  {
    name: '3x3 d[2,3] valid M=2',
    x: [1, 12, 11, 2],
    f: [3, 3, 2, 2],
    strides: 1,
    dilations: [2, 3],
    pad: 'valid',
  },
];

const TOL = 1e-5;

describe('wasm training kernels', () => {
  beforeAll(async () => {
    registerWasmTrainingKernels();
    await tf.setBackend('wasm');
  });
  afterAll(async () => {
    await tf.setBackend('wasm');
  });

  it('registers all four kernels on wasm, replacing the native Conv2DBackpropInput', () => {
    for (const name of [
      'Conv2DBackpropFilter',
      'Conv2DBackpropInput',
      'DepthwiseConv2dNativeBackpropFilter',
      'DepthwiseConv2dNativeBackpropInput',
    ]) {
      expect(tf.getKernel(name, 'wasm'), name).toBeDefined();
    }
    registerWasmTrainingKernels(); // idempotent
    const native = nativeWasmConv2DBackpropInput();
    expect(native?.backendName).toBe('wasm');
    expect(tf.getKernel('Conv2DBackpropInput', 'wasm')?.kernelFunc).not.toBe(native?.kernelFunc);
  });

  describe.each(convCases)('conv2d $name', (c) => {
    const dyShape = outShape(c.x, c.f, c.strides, 1, c.pad, false, c.round);
    const x = { data: randn(c.x), shape: c.x };
    const f = { data: randn(c.f), shape: c.f };
    const dy = { data: randn(dyShape), shape: dyShape };
    const common = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: c.round };

    it('Conv2DBackpropFilter matches cpu', async () => {
      const attrs = { ...common, filterShape: c.f };
      const ref = await runOn('cpu', 'Conv2DBackpropFilter', { x, dy }, attrs);
      const got = await runOn('wasm', 'Conv2DBackpropFilter', { x, dy }, attrs);
      expect(got.shape).toEqual(c.f);
      expect(relErr(got.data, ref.data)).toBeLessThan(TOL);
    });

    it('Conv2DBackpropInput matches cpu', async () => {
      const attrs = { ...common, inputShape: c.x };
      const ref = await runOn('cpu', 'Conv2DBackpropInput', { dy, filter: f }, attrs);
      const got = await runOn('wasm', 'Conv2DBackpropInput', { dy, filter: f }, attrs);
      expect(got.shape).toEqual(c.x);
      expect(relErr(got.data, ref.data)).toBeLessThan(TOL);
    });
  });

  describe.each(depthwiseCases)('depthwise $name', (c) => {
    const dyShape = outShape(c.x, c.f, c.strides, c.dilations, c.pad, true);
    const x = { data: randn(c.x), shape: c.x };
    const f = { data: randn(c.f), shape: c.f };
    const dy = { data: randn(dyShape), shape: dyShape };
    // tfjs's cpu kernels ignore dilations; the reference runs the equivalent undilated
    // conv with the zero-dilated filter instead.
    const fd = dilateFilter(f.data, c.f, c.dilations);
    const common = { strides: c.strides, pad: c.pad };

    it('DepthwiseConv2dNativeBackpropFilter matches cpu', async () => {
      const attrs = { ...common, dilations: c.dilations, filterShape: c.f };
      const refAttrs = { ...common, dilations: 1, filterShape: fd.shape };
      const full = await runOn('cpu', 'DepthwiseConv2dNativeBackpropFilter', { x, dy }, refAttrs);
      const got = await runOn('wasm', 'DepthwiseConv2dNativeBackpropFilter', { x, dy }, attrs);
      expect(got.shape).toEqual(c.f);
      // Keep the reference's taps at multiples of the dilation.
      const [kh, kw, ch, m] = c.f;
      const ref = new Float32Array(kh * kw * ch * m);
      for (let a = 0; a < kh; a++) {
        for (let b = 0; b < kw; b++) {
          const src = (a * c.dilations[0] * fd.shape[1] + b * c.dilations[1]) * ch * m;
          ref.set(full.data.subarray(src, src + ch * m), (a * kw + b) * ch * m);
        }
      }
      expect(relErr(got.data, ref)).toBeLessThan(TOL);
    });

    it('DepthwiseConv2dNativeBackpropInput matches cpu', async () => {
      const attrs = { ...common, dilations: c.dilations, inputShape: c.x };
      const refAttrs = { ...common, dilations: 1, inputShape: c.x };
      const ref = await runOn(
        'cpu',
        'DepthwiseConv2dNativeBackpropInput',
        { dy, filter: fd },
        refAttrs,
      );
      const got = await runOn(
        'wasm',
        'DepthwiseConv2dNativeBackpropInput',
        { dy, filter: f },
        attrs,
      );
      expect(got.shape).toEqual(c.x);
      expect(relErr(got.data, ref.data)).toBeLessThan(TOL);
    });
  });

  it('rejects a dy whose shape does not fit the forward conv', async () => {
    await tf.setBackend('wasm');
    const dy = tf.zeros([1, 4, 4, 2]);
    const x = tf.zeros([1, 9, 9, 3]);
    expect(() =>
      tf
        .engine()
        .runKernel(
          'Conv2DBackpropFilter',
          { x, dy },
          { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 3, 2] },
        ),
    ).toThrow(/Conv2DBackpropFilter \(wasm\): dy must have shape \[1,9,9,2\].*got \[1,4,4,2\]/);
    const filter = tf.zeros([3, 3, 3, 2]);
    const dySame = tf.zeros([1, 9, 9, 2]);
    const nchw = { strides: 1, pad: 'same', dataFormat: 'NCHW', inputShape: [1, 9, 9, 3] };
    expect(() =>
      tf.engine().runKernel('Conv2DBackpropInput', { dy: dySame, filter }, nchw),
    ).toThrow(/Conv2DBackpropInput \(wasm\): only dataFormat 'NHWC' runs on wasm, got 'NCHW'/);
    tf.dispose([dy, x, filter, dySame]);
  });

  /** Weights and input of a small conv(s2) -> relu -> depthwise(s1) -> conv(1x1) net. */
  const net = {
    x: { data: randn([2, 9, 9, 3]), shape: [2, 9, 9, 3] },
    w1: { data: randn([3, 3, 3, 8]), shape: [3, 3, 3, 8] },
    w2: { data: randn([3, 3, 8, 1]), shape: [3, 3, 8, 1] },
    w3: { data: randn([1, 1, 8, 4]), shape: [1, 1, 8, 4] },
  };

  function netGrads(): tf.Tensor[] {
    const t = Object.fromEntries(
      Object.entries(net).map(([k, v]) => [k, tf.tensor4d(v.data, v.shape as Shape4)]),
    );
    const loss = (x: tf.Tensor, w1: tf.Tensor, w2: tf.Tensor, w3: tf.Tensor) => {
      // The fused op's gradient reaches the same backprop kernels by another path.
      const h1 = tf.fused.conv2d({
        x: x as tf.Tensor4D,
        filter: w1 as tf.Tensor4D,
        strides: 2,
        pad: 'same',
        activation: 'relu',
      });
      const h2 = tf.depthwiseConv2d(h1, w2 as tf.Tensor4D, 1, 'same');
      const h3 = tf.conv2d(h2, w3 as tf.Tensor4D, 1, 'valid');
      return tf.sum(tf.square(h3));
    };
    const grads = tf.grads(loss)([t.x!, t.w1!, t.w2!, t.w3!]);
    tf.dispose(Object.values(t));
    return grads;
  }

  it('gives the gradients of a conv -> depthwise -> conv net that cpu gives', async () => {
    await tf.setBackend('cpu');
    const ref = tf.tidy(() => netGrads().map((g) => g.dataSync() as Float32Array));
    await tf.setBackend('wasm');
    const got = tf.tidy(() => netGrads().map((g) => g.dataSync() as Float32Array));
    expect(got).toHaveLength(4);
    for (let i = 0; i < 4; i++) expect(relErr(got[i]!, ref[i]!)).toBeLessThan(TOL);
  });

  it('leaks no tensors over 50 gradient calls', async () => {
    await tf.setBackend('wasm');
    tf.dispose(netGrads()); // warm-up
    const before = tf.memory().numTensors;
    for (let i = 0; i < 50; i++) tf.dispose(netGrads());
    expect(tf.memory().numTensors).toBe(before);
  });
});
