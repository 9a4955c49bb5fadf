/**
 * Benchmark of DisCo's wasm training kernels on ResNet-18 (CIFAR stem) and
 * MobileNetV3-small@64 layer shapes: ms of the forward conv, our dX and dW kernels, the
 * wasm backend's native Conv2DBackpropInput, and the cpu backend on a batch slice (scaled
 * linearly to the full batch).
 *
 * Run: npx tsx bench/kernels.ts [--batch 32] [--no-cpu] [--only substring]
 * (or, without tsx: node bench/run.mjs kernels [same flags]).
 */
import { registerWasmTrainingKernels, tf } from '../packages/core/src/index.js';
import { nativeWasmConv2DBackpropInput } from '../packages/core/src/kernels/index.js';

interface Layer {
  name: string;
  /** Input height = width, input channels, output channels, kernel, stride. */
  hw: number;
  ci: number;
  co: number;
  k: number;
  s: number;
  depthwise?: boolean;
}

const LAYERS: Layer[] = [
  { name: 'R18c stem 3->64 32x32', hw: 32, ci: 3, co: 64, k: 3, s: 1 },
  { name: 'R18c layer1 64->64 32x32', hw: 32, ci: 64, co: 64, k: 3, s: 1 },
  { name: 'R18c layer2 64->128 s2', hw: 32, ci: 64, co: 128, k: 3, s: 2 },
  { name: 'R18c down 1x1 64->128 s2', hw: 32, ci: 64, co: 128, k: 1, s: 2 },
  { name: 'R18c layer3 256->256 8x8', hw: 8, ci: 256, co: 256, k: 3, s: 1 },
  { name: 'R18c layer4 512->512 4x4', hw: 4, ci: 512, co: 512, k: 3, s: 1 },
  { name: 'MBv3 1x1 16->72 16x16', hw: 16, ci: 16, co: 72, k: 1, s: 1 },
  { name: 'MBv3 1x1 576->96 2x2', hw: 2, ci: 576, co: 96, k: 1, s: 1 },
  { name: 'MBv3 dw3x3 s2 16ch 32x32', hw: 32, ci: 16, co: 16, k: 3, s: 2, depthwise: true },
  { name: 'MBv3 dw3x3 s2 72ch 16x16', hw: 16, ci: 72, co: 72, k: 3, s: 2, depthwise: true },
  { name: 'MBv3 dw3x3 s1 88ch 8x8', hw: 8, ci: 88, co: 88, k: 3, s: 1, depthwise: true },
  { name: 'MBv3 dw5x5 s2 96ch 8x8', hw: 8, ci: 96, co: 96, k: 5, s: 2, depthwise: true },
  { name: 'MBv3 dw5x5 s1 240ch 4x4', hw: 4, ci: 240, co: 240, k: 5, s: 1, depthwise: true },
];

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1]! : fallback;
};
const BATCH = Number(option('--batch', '32'));
const ONLY = option('--only', '');
const CPU_BATCH = 1;
const REPEATS = 5;

/** Median ms of `REPEATS` runs of `f` after one warm-up; each result is read back. */
function time(f: () => tf.Tensor): number {
  const once = () => {
    const t0 = performance.now();
    const out = f();
    out.dataSync();
    const ms = performance.now() - t0;
    out.dispose();
    return ms;
  };
  once();
  const runs = [...Array(REPEATS)].map(once).sort((a, b) => a - b);
  return runs[REPEATS >> 1]!;
}

function timeOnce(f: () => tf.Tensor): number {
  const t0 = performance.now();
  const out = f();
  out.dataSync();
  const ms = performance.now() - t0;
  out.dispose();
  return ms;
}

function kernelCalls(l: Layer, n: number) {
  const x = tf.randomNormal([n, l.hw, l.hw, l.ci]) as tf.Tensor4D;
  const f = tf.randomNormal(l.depthwise ? [l.k, l.k, l.ci, 1] : [l.k, l.k, l.ci, l.co]);
  const filter = f as tf.Tensor4D;
  const fwd = () =>
    l.depthwise ? tf.depthwiseConv2d(x, filter, l.s, 'same') : tf.conv2d(x, filter, l.s, 'same');
  const y = fwd();
  const dy = tf.randomNormal(y.shape) as tf.Tensor4D;
  y.dispose();
  const base = { strides: l.s, pad: 'same', dimRoundingMode: undefined } as const;
  const run = (kernel: string, inputs: tf.NamedTensorMap, attrs: object) => () =>
    tf.engine().runKernel(kernel, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;
  const dX = l.depthwise
    ? run(
        'DepthwiseConv2dNativeBackpropInput',
        { dy, filter },
        { ...base, dilations: 1, inputShape: x.shape },
      )
    : run(
        'Conv2DBackpropInput',
        { dy, filter },
        { ...base, dataFormat: 'NHWC', inputShape: x.shape },
      );
  const dW = l.depthwise
    ? run(
        'DepthwiseConv2dNativeBackpropFilter',
        { x, dy },
        { ...base, dilations: 1, filterShape: filter.shape },
      )
    : run(
        'Conv2DBackpropFilter',
        { x, dy },
        { ...base, dataFormat: 'NHWC', filterShape: filter.shape },
      );
  const dispose = () => tf.dispose([x, filter, dy]);
  return { x, filter, dy, fwd, dX, dW, dispose };
}

function gmacs(l: Layer, n: number): number {
  const ho = Math.ceil(l.hw / l.s);
  return (n * ho * ho * l.co * l.k * l.k * (l.depthwise ? 1 : l.ci)) / 1e9;
}

async function main() {
  await tf.setBackend('wasm');
  registerWasmTrainingKernels();
  const native = nativeWasmConv2DBackpropInput()!;
  const backend = tf.backend();
  const fmt = (v: number | undefined, digits = 2) => (v === undefined ? '-' : v.toFixed(digits));
  console.log(
    `batch ${BATCH}; wasm ms are medians of ${REPEATS}; cpu timed once on batch ` +
      `${CPU_BATCH} and scaled to ${BATCH}`,
  );
  console.log(
    '| layer | GMAC | fwd | dX | dW | native dX | dX/fwd | dW/fwd | native/dX | cpu fwd | cpu dX | cpu dW | cpu dW / dW |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const l of LAYERS) {
    if (ONLY !== '' && !l.name.includes(ONLY)) continue;
    await tf.setBackend('wasm');
    const w = kernelCalls(l, BATCH);
    const fwd = time(w.fwd);
    const dX = time(w.dX);
    const dW = time(w.dW);
    let nativeDx: number | undefined;
    if (!l.depthwise) {
      const attrs = { strides: l.s, pad: 'same', dataFormat: 'NHWC', inputShape: w.x.shape };
      nativeDx = time(() => {
        const info = native.kernelFunc({
          inputs: { dy: w.dy, filter: w.filter },
          attrs: attrs as unknown as tf.NamedAttrMap,
          backend,
        }) as tf.TensorInfo;
        return tf.engine().makeTensorFromTensorInfo(info);
      });
    }
    w.dispose();
    let cpu: { fwd: number; dX: number; dW: number } | undefined;
    if (!flag('--no-cpu')) {
      await tf.setBackend('cpu');
      const c = kernelCalls(l, CPU_BATCH);
      const scale = BATCH / CPU_BATCH;
      cpu = {
        fwd: timeOnce(c.fwd) * scale,
        dX: timeOnce(c.dX) * scale,
        dW: timeOnce(c.dW) * scale,
      };
      c.dispose();
    }
    console.log(
      `| ${l.name} | ${fmt(gmacs(l, BATCH), 3)} | ${fmt(fwd)} | ${fmt(dX)} | ${fmt(dW)} | ` +
        `${fmt(nativeDx)} | ${fmt(dX / fwd)} | ${fmt(dW / fwd)} | ` +
        `${nativeDx === undefined ? '-' : fmt(nativeDx / dX)} | ${fmt(cpu?.fwd, 0)} | ` +
        `${fmt(cpu?.dX, 0)} | ${fmt(cpu?.dW, 0)} | ${cpu === undefined ? '-' : fmt(cpu.dW / dW, 0)} |`,
    );
  }
}

await main();
