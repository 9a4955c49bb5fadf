// packages/core/src/tf.ts
import * as tf from "file:///work/main/node_modules/.pnpm/@tensorflow+tfjs-core@4.22.0/node_modules/@tensorflow/tfjs-core/dist/tf-core.node.js";
import "file:///work/main/node_modules/.pnpm/@tensorflow+tfjs@4.22.0_seedrandom@3.0.5/node_modules/@tensorflow/tfjs/dist/tf.node.js";
import "file:///work/main/node_modules/.pnpm/@tensorflow+tfjs-backend-cpu@4.22.0_@tensorflow+tfjs-core@4.22.0/node_modules/@tensorflow/tfjs-backend-cpu/dist/tf-backend-cpu.node.js";
import "file:///work/main/node_modules/.pnpm/@tensorflow+tfjs-backend-wasm@4.22.0_@tensorflow+tfjs-core@4.22.0/node_modules/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.node.js";

// packages/core/src/kernels/geometry.ts
function pair(name, what, v) {
  const p = v === void 0 ? [1, 1] : typeof v === "number" ? [v, v] : v;
  if (!p.every((n) => Number.isInteger(n) && n >= 1)) {
    throw new Error(`${name}: ${what} must be positive integers, got ${JSON.stringify(v)}`);
  }
  return p;
}
function forwardGeometry(name, inShape, filterShape, dyShape, strides, dilations, pad, dimRoundingMode, depthwise, dataFormat) {
  if (dataFormat !== void 0 && dataFormat !== "NHWC") {
    throw new Error(`${name}: only dataFormat 'NHWC' runs on wasm, got '${dataFormat}'`);
  }
  if (strides.some((s) => s > 1) && dilations.some((d) => d > 1)) {
    throw new Error(
      `${name}: strides or dilations must be 1, got strides ${strides} and dilations ${dilations}`
    );
  }
  const info = tf.backend_util.computeConv2DInfo(
    inShape,
    filterShape,
    strides,
    dilations,
    pad,
    dimRoundingMode,
    depthwise
  );
  const expected = [inShape[0], info.outHeight, info.outWidth, info.outChannels];
  if (dyShape.length !== 4 || dyShape.some((d, i) => d !== expected[i])) {
    throw new Error(
      `${name}: dy must have shape [${expected}] for input [${inShape}] and filter [${filterShape}], got [${dyShape}]`
    );
  }
  const { top, left, bottom, right } = info.padInfo;
  return { inShape, outHeight: info.outHeight, outWidth: info.outWidth, top, left, bottom, right };
}
function stride1Conv(x, filter, pads, depthwise, dilations = [1, 1]) {
  const { top, bottom, left, right } = pads;
  const explicit = [
    [0, 0],
    [Math.max(top, 0), Math.max(bottom, 0)],
    [Math.max(left, 0), Math.max(right, 0)],
    [0, 0]
  ];
  const y = depthwise ? tf.depthwiseConv2d(x, filter, 1, explicit, "NHWC", dilations) : tf.conv2d(x, filter, 1, explicit, "NHWC", dilations);
  const cropTop = Math.max(-top, 0);
  const cropLeft = Math.max(-left, 0);
  const height = y.shape[1] - cropTop - Math.max(-bottom, 0);
  const width = y.shape[2] - cropLeft - Math.max(-right, 0);
  if (cropTop === 0 && cropLeft === 0 && height === y.shape[1] && width === y.shape[2]) return y;
  return tf.slice(y, [0, cropTop, cropLeft, 0], [y.shape[0], height, width, y.shape[3]]);
}
function kernelFromOps(compute) {
  return ({ inputs, attrs }) => tf.tidy(() => {
    const tensors = {};
    for (const [key, info] of Object.entries(inputs)) {
      if (info === void 0) continue;
      tensors[key] = info instanceof tf.Tensor ? info : tf.engine().makeTensorFromTensorInfo(info);
    }
    return compute(tensors, attrs);
  });
}

// packages/core/src/kernels/conv2d_backprop_filter.ts
var NAME = "Conv2DBackpropFilter (wasm)";
function conv2dFilterGrad(x, dy, attrs) {
  const [kh, kw, ci, co] = attrs.filterShape;
  const strides = pair(NAME, "strides", attrs.strides);
  if (x.shape[3] !== ci) {
    throw new Error(`${NAME}: x has ${x.shape[3]} channels, filterShape [${attrs.filterShape}]`);
  }
  const g = forwardGeometry(
    NAME,
    x.shape,
    attrs.filterShape,
    dy.shape,
    strides,
    [1, 1],
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    attrs.dataFormat
  );
  const needH = (g.outHeight - 1) * strides[0] + kh;
  const needW = (g.outWidth - 1) * strides[1] + kw;
  const pads = [
    [0, 0],
    [g.top, Math.max(needH - x.shape[1] - g.top, 0)],
    [g.left, Math.max(needW - x.shape[2] - g.left, 0)],
    [0, 0]
  ];
  const xT = tf.transpose(x, [3, 1, 2, 0]);
  const dyT = tf.transpose(dy, [1, 2, 0, 3]);
  const full = tf.conv2d(xT, dyT, 1, pads, "NHWC", strides);
  const taps = full.shape[1] === kh && full.shape[2] === kw ? full : tf.slice(full, [0, 0, 0, 0], [ci, kh, kw, co]);
  return tf.transpose(taps, [1, 2, 0, 3]);
}
var conv2dBackpropFilterConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: "wasm",
  kernelFunc: kernelFromOps(
    (inputs, attrs) => conv2dFilterGrad(inputs.x, inputs.dy, attrs)
  )
};

// packages/core/src/kernels/phase_filter.ts
function phasePlan(k, s, pad, size, outSize) {
  const phases = [...Array(s).keys()].map((phi) => {
    const rho = (phi + pad) % s;
    const count = rho < k ? Math.ceil((k - rho) / s) : 0;
    const delta = Math.floor((phi + pad) / s);
    return { rho, count, front: count - 1 - delta };
  });
  const front = Math.max(...phases.filter((p) => p.count > 0).map((p) => p.front));
  const length = Math.max(...phases.map((p) => front - p.front + p.count));
  const taps = phases.map(({ rho, count, front: own }) => {
    const t = new Int32Array(length).fill(-1);
    const shift = front - own;
    for (let mFlipped = 0; mFlipped < count; mFlipped++) {
      t[shift + mFlipped] = rho + s * (count - 1 - mFlipped);
    }
    return t;
  });
  const perPhase = Math.ceil(size / s);
  const padAfter = perPhase - 1 + length - 1 - front - (outSize - 1);
  return { stride: s, length, taps, padBefore: front, padAfter, perPhase };
}
function phaseFilter(w, shape, rows, cols) {
  const [, kw, ci, co] = shape;
  const sh = rows.stride;
  const sw = cols.stride;
  const lh = rows.length;
  const lw = cols.length;
  const outCh = sh * sw * ci;
  const g = new Float32Array(lh * lw * co * outCh);
  for (let ph = 0; ph < sh; ph++) {
    for (let pw = 0; pw < sw; pw++) {
      const chBase = (ph * sw + pw) * ci;
      for (let th = 0; th < lh; th++) {
        const a = rows.taps[ph][th];
        if (a < 0) continue;
        for (let tw = 0; tw < lw; tw++) {
          const b = cols.taps[pw][tw];
          if (b < 0) continue;
          const src = (a * kw + b) * ci * co;
          const dst = (th * lw + tw) * co * outCh + chBase;
          for (let c = 0; c < ci; c++) {
            const s = src + c * co;
            const d = dst + c;
            for (let o = 0; o < co; o++) g[d + o * outCh] = w[s + o];
          }
        }
      }
    }
  }
  return tf.tensor4d(g, [lh, lw, co, outCh], "float32");
}

// packages/core/src/kernels/conv2d_backprop_input.ts
var NAME2 = "Conv2DBackpropInput (wasm)";
function conv2dInputGrad(dy, filter, attrs) {
  const [n, h, w, ci] = attrs.inputShape;
  const [kh, kw, fci] = filter.shape;
  if (fci !== ci) {
    throw new Error(
      `${NAME2}: filter [${filter.shape}] does not fit inputShape [${attrs.inputShape}]`
    );
  }
  const strides = pair(NAME2, "strides", attrs.strides);
  const g = forwardGeometry(
    NAME2,
    attrs.inputShape,
    filter.shape,
    dy.shape,
    strides,
    [1, 1],
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    attrs.dataFormat
  );
  const rows = phasePlan(kh, strides[0], g.top, h, g.outHeight);
  const cols = phasePlan(kw, strides[1], g.left, w, g.outWidth);
  const values = filter.dataSync();
  const combined = phaseFilter(values, filter.shape, rows, cols);
  const phases = stride1Conv(
    dy,
    combined,
    { top: rows.padBefore, bottom: rows.padAfter, left: cols.padBefore, right: cols.padAfter },
    false
  );
  const [sh, sw] = strides;
  if (sh === 1 && sw === 1) return phases;
  const [, u, v] = phases.shape;
  const interleaved = sh === sw ? tf.depthToSpace(phases, sh, "NHWC") : tf.reshape(tf.transpose(tf.reshape(phases, [n, u, v, sh, sw, ci]), [0, 1, 3, 2, 4, 5]), [
    n,
    u * sh,
    v * sw,
    ci
  ]);
  if (u * sh === h && v * sw === w) return interleaved;
  return tf.slice(interleaved, [0, 0, 0, 0], [n, h, w, ci]);
}
var conv2dBackpropInputConfig = {
  kernelName: tf.Conv2DBackpropInput,
  backendName: "wasm",
  kernelFunc: kernelFromOps(
    (inputs, attrs) => conv2dInputGrad(inputs.dy, inputs.filter, attrs)
  )
};

// packages/core/src/kernels/depthwise_backprop_filter.ts
var NAME3 = "DepthwiseConv2dNativeBackpropFilter (wasm)";
function depthwiseFilterGrad(x, dy, attrs) {
  const [kh, kw, c, m] = attrs.filterShape;
  const [n, h, w, xc] = x.shape;
  if (xc !== c) {
    throw new Error(`${NAME3}: x has ${xc} channels, filterShape [${attrs.filterShape}]`);
  }
  const strides = pair(NAME3, "strides", attrs.strides);
  const dilations = pair(NAME3, "dilations", attrs.dilations);
  const g = forwardGeometry(
    NAME3,
    x.shape,
    attrs.filterShape,
    dy.shape,
    strides,
    dilations,
    attrs.pad,
    attrs.dimRoundingMode,
    true,
    void 0
  );
  const needH = (g.outHeight - 1) * strides[0] + (kh - 1) * dilations[0] + 1;
  const needW = (g.outWidth - 1) * strides[1] + (kw - 1) * dilations[1] + 1;
  const pads = [
    [0, 0],
    [g.top, Math.max(needH - h - g.top, 0)],
    [g.left, Math.max(needW - w - g.left, 0)],
    [0, 0]
  ];
  const folded = n === 1 ? x : tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, n * c]);
  const [, ho, wo] = dy.shape;
  const filter = tf.reshape(n === 1 ? dy : tf.transpose(dy, [1, 2, 0, 3]), [
    ho,
    wo,
    n * c,
    m
  ]);
  const full = tf.depthwiseConv2d(folded, filter, dilations, pads, "NHWC", strides);
  const taps = full.shape[1] === kh && full.shape[2] === kw ? full : tf.slice(full, [0, 0, 0, 0], [1, kh, kw, n * c * m]);
  const perImage = tf.reshape(taps, [kh, kw, n, c * m]);
  return tf.reshape(n === 1 ? perImage : tf.sum(perImage, 2), [kh, kw, c, m]);
}
var depthwiseBackpropFilterConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropFilter,
  backendName: "wasm",
  kernelFunc: kernelFromOps(
    (inputs, attrs) => depthwiseFilterGrad(inputs.x, inputs.dy, attrs)
  )
};

// packages/core/src/kernels/depthwise_backprop_input.ts
var NAME4 = "DepthwiseConv2dNativeBackpropInput (wasm)";
function zeroDilate(dy, sh, sw) {
  if (sh === 1 && sw === 1) return dy;
  const [n, ho, wo, c] = dy.shape;
  const spread = tf.pad(tf.reshape(dy, [n, ho, 1, wo, 1, c]), [
    [0, 0],
    [0, 0],
    [0, sh - 1],
    [0, 0],
    [0, sw - 1],
    [0, 0]
  ]);
  return tf.reshape(spread, [n, ho * sh, wo * sw, c]);
}
function flippedDepthwiseFilter(filter) {
  const [kh, kw, c, m] = filter.shape;
  const w = filter.dataSync();
  const out = new Float32Array(w.length);
  const plane = c * m;
  for (let a = 0; a < kh; a++) {
    for (let b = 0; b < kw; b++) {
      const src = (a * kw + b) * plane;
      out.set(w.subarray(src, src + plane), ((kh - 1 - a) * kw + (kw - 1 - b)) * plane);
    }
  }
  return tf.tensor4d(out, [kh, kw, plane, 1], "float32");
}
function depthwiseInputGrad(dy, filter, attrs) {
  const [n, h, w, c] = attrs.inputShape;
  const [kh, kw, fc, m] = filter.shape;
  if (fc !== c) {
    throw new Error(
      `${NAME4}: filter [${filter.shape}] does not fit inputShape [${attrs.inputShape}]`
    );
  }
  const strides = pair(NAME4, "strides", attrs.strides);
  const dilations = pair(NAME4, "dilations", attrs.dilations);
  const g = forwardGeometry(
    NAME4,
    attrs.inputShape,
    filter.shape,
    dy.shape,
    strides,
    dilations,
    attrs.pad,
    attrs.dimRoundingMode,
    true,
    void 0
  );
  const [sh, sw] = strides;
  const [dh, dw] = dilations;
  const spread = zeroDilate(dy, sh, sw);
  const pads = {
    top: (kh - 1) * dh - g.top,
    bottom: h - 1 + g.top - (g.outHeight * sh - 1),
    left: (kw - 1) * dw - g.left,
    right: w - 1 + g.left - (g.outWidth * sw - 1)
  };
  const dx = stride1Conv(spread, flippedDepthwiseFilter(filter), pads, true, dilations);
  if (m === 1) return dx;
  return tf.sum(tf.reshape(dx, [n, h, w, c, m]), 4);
}
var depthwiseBackpropInputConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropInput,
  backendName: "wasm",
  kernelFunc: kernelFromOps(
    (inputs, attrs) => depthwiseInputGrad(inputs.dy, inputs.filter, attrs)
  )
};

// packages/core/src/kernels/index.ts
var WASM_TRAINING_KERNELS = [
  tf.Conv2DBackpropFilter,
  tf.Conv2DBackpropInput,
  tf.DepthwiseConv2dNativeBackpropFilter,
  tf.DepthwiseConv2dNativeBackpropInput
];
var native;
var registered = false;
function registerWasmTrainingKernels() {
  if (registered) return;
  registered = true;
  native = tf.getKernel(tf.Conv2DBackpropInput, "wasm");
  for (const config of [
    conv2dBackpropFilterConfig,
    conv2dBackpropInputConfig,
    depthwiseBackpropFilterConfig,
    depthwiseBackpropInputConfig
  ]) {
    if (tf.getKernel(config.kernelName, "wasm") !== void 0) {
      tf.unregisterKernel(config.kernelName, "wasm");
    }
    tf.registerKernel(config);
  }
}
function nativeWasmConv2DBackpropInput() {
  return native;
}

// packages/core/src/safetensors.ts
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { dirname } from "node:path";
var MAX_HEADER_BYTES = 100 * 1024 * 1024;
var f32 = new Float32Array(1);
var u32 = new Uint32Array(f32.buffer);

// bench/kernels.ts
var LAYERS = [
  { name: "R18c stem 3->64 32x32", hw: 32, ci: 3, co: 64, k: 3, s: 1 },
  { name: "R18c layer1 64->64 32x32", hw: 32, ci: 64, co: 64, k: 3, s: 1 },
  { name: "R18c layer2 64->128 s2", hw: 32, ci: 64, co: 128, k: 3, s: 2 },
  { name: "R18c down 1x1 64->128 s2", hw: 32, ci: 64, co: 128, k: 1, s: 2 },
  { name: "R18c layer3 256->256 8x8", hw: 8, ci: 256, co: 256, k: 3, s: 1 },
  { name: "R18c layer4 512->512 4x4", hw: 4, ci: 512, co: 512, k: 3, s: 1 },
  { name: "MBv3 1x1 16->72 16x16", hw: 16, ci: 16, co: 72, k: 1, s: 1 },
  { name: "MBv3 1x1 576->96 2x2", hw: 2, ci: 576, co: 96, k: 1, s: 1 },
  { name: "MBv3 dw3x3 s2 16ch 32x32", hw: 32, ci: 16, co: 16, k: 3, s: 2, depthwise: true },
  { name: "MBv3 dw3x3 s2 72ch 16x16", hw: 16, ci: 72, co: 72, k: 3, s: 2, depthwise: true },
  { name: "MBv3 dw3x3 s1 88ch 8x8", hw: 8, ci: 88, co: 88, k: 3, s: 1, depthwise: true },
  { name: "MBv3 dw5x5 s2 96ch 8x8", hw: 8, ci: 96, co: 96, k: 5, s: 2, depthwise: true },
  { name: "MBv3 dw5x5 s1 240ch 4x4", hw: 4, ci: 240, co: 240, k: 5, s: 1, depthwise: true }
];
var args = process.argv.slice(2);
var flag = (name) => args.includes(name);
var option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
var BATCH = Number(option("--batch", "32"));
var ONLY = option("--only", "");
var CPU_BATCH = 1;
var REPEATS = 5;
function time(f) {
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
  return runs[REPEATS >> 1];
}
function timeOnce(f) {
  const t0 = performance.now();
  const out = f();
  out.dataSync();
  const ms = performance.now() - t0;
  out.dispose();
  return ms;
}
function kernelCalls(l, n) {
  const x = tf.randomNormal([n, l.hw, l.hw, l.ci]);
  const f = tf.randomNormal(l.depthwise ? [l.k, l.k, l.ci, 1] : [l.k, l.k, l.ci, l.co]);
  const filter = f;
  const fwd = () => l.depthwise ? tf.depthwiseConv2d(x, filter, l.s, "same") : tf.conv2d(x, filter, l.s, "same");
  const y = fwd();
  const dy = tf.randomNormal(y.shape);
  y.dispose();
  const base = { strides: l.s, pad: "same", dimRoundingMode: void 0 };
  const run = (kernel, inputs, attrs) => () => tf.engine().runKernel(kernel, inputs, attrs);
  const dX = l.depthwise ? run(
    "DepthwiseConv2dNativeBackpropInput",
    { dy, filter },
    { ...base, dilations: 1, inputShape: x.shape }
  ) : run(
    "Conv2DBackpropInput",
    { dy, filter },
    { ...base, dataFormat: "NHWC", inputShape: x.shape }
  );
  const dW = l.depthwise ? run(
    "DepthwiseConv2dNativeBackpropFilter",
    { x, dy },
    { ...base, dilations: 1, filterShape: filter.shape }
  ) : run(
    "Conv2DBackpropFilter",
    { x, dy },
    { ...base, dataFormat: "NHWC", filterShape: filter.shape }
  );
  const dispose = () => tf.dispose([x, filter, dy]);
  return { x, filter, dy, fwd, dX, dW, dispose };
}
function gmacs(l, n) {
  const ho = Math.ceil(l.hw / l.s);
  return n * ho * ho * l.co * l.k * l.k * (l.depthwise ? 1 : l.ci) / 1e9;
}
async function main() {
  await tf.setBackend("wasm");
  registerWasmTrainingKernels();
  const native2 = nativeWasmConv2DBackpropInput();
  const backend = tf.backend();
  const fmt = (v, digits = 2) => v === void 0 ? "-" : v.toFixed(digits);
  console.log(
    `batch ${BATCH}; wasm ms are medians of ${REPEATS}; cpu timed once on batch ${CPU_BATCH} and scaled to ${BATCH}`
  );
  console.log(
    "| layer | GMAC | fwd | dX | dW | native dX | dX/fwd | dW/fwd | native/dX | cpu fwd | cpu dX | cpu dW | cpu dW / dW |"
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const l of LAYERS) {
    if (ONLY !== "" && !l.name.includes(ONLY)) continue;
    await tf.setBackend("wasm");
    const w = kernelCalls(l, BATCH);
    const fwd = time(w.fwd);
    const dX = time(w.dX);
    const dW = time(w.dW);
    let nativeDx;
    if (!l.depthwise) {
      const attrs = { strides: l.s, pad: "same", dataFormat: "NHWC", inputShape: w.x.shape };
      nativeDx = time(() => {
        const info = native2.kernelFunc({
          inputs: { dy: w.dy, filter: w.filter },
          attrs,
          backend
        });
        return tf.engine().makeTensorFromTensorInfo(info);
      });
    }
    w.dispose();
    let cpu;
    if (!flag("--no-cpu")) {
      await tf.setBackend("cpu");
      const c = kernelCalls(l, CPU_BATCH);
      const scale = BATCH / CPU_BATCH;
      cpu = {
        fwd: timeOnce(c.fwd) * scale,
        dX: timeOnce(c.dX) * scale,
        dW: timeOnce(c.dW) * scale
      };
      c.dispose();
    }
    console.log(
      `| ${l.name} | ${fmt(gmacs(l, BATCH), 3)} | ${fmt(fwd)} | ${fmt(dX)} | ${fmt(dW)} | ${fmt(nativeDx)} | ${fmt(dX / fwd)} | ${fmt(dW / fwd)} | ${nativeDx === void 0 ? "-" : fmt(nativeDx / dX)} | ${fmt(cpu?.fwd, 0)} | ${fmt(cpu?.dX, 0)} | ${fmt(cpu?.dW, 0)} | ${cpu === void 0 ? "-" : fmt(cpu.dW / dW, 0)} |`
    );
  }
}
await main();
