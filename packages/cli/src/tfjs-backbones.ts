/**
 * Our backbones as Keras layer graphs for TensorFlow.js: the eval-mode forward pass of each
 * family written again with stock tfjs layers, weights taken from the `Params` by their
 * torchvision names. BatchNorm uses the running statistics and the family's epsilon; the
 * activations tfjs lacks are composed from standard layers (hard-sigmoid as
 * `min(max(x / 6 + 1/2, 0), 1)`, hard-swish as `x` times that), so a page needs no custom layer.
 *
 * PyTorch pads every convolution here symmetrically by `(k - 1) / 2`. Keras' 'same' does that
 * only at stride 1 (at stride 2 it puts the extra row at the bottom), so a strided convolution
 * gets an explicit `ZeroPadding2D` and 'valid'.
 *
 * The graphs follow the families' tables (`RESNET_VARIANTS` via the parameter names,
 * `MOBILENET_V3_VARIANTS`, EfficientNet's stages) and read every parameter they use by name;
 * a backbone parameter left unread fails the export, so a family that changes shape cannot be
 * exported half right. The export tests compare the outputs with our own forward pass.
 */
import { MOBILENET_V3_VARIANTS, type Backbone, type BackboneOptions } from '@disco/backbones';
import type { Activation, Params } from '@disco/core';
import { LayersGraph, type Node, type WeightValues } from './tfjs-graph.js';

/** BatchNorm epsilon of each family (PyTorch's default, torchvision's MobileNetV3 setting). */
const BN_EPS = { resnet: 1e-5, mobilenet_v3: 1e-3, efficientnet: 1e-5 } as const;

type Family = keyof typeof BN_EPS;

/**
 * EfficientNet-B0's stage strides (Tan and Le 2019, Table 1, stages 2 to 8), the one part of
 * the architecture the parameter names and shapes do not tell.
 */
const EFFICIENTNET_STRIDES = [1, 2, 2, 2, 1, 2, 1];

/** The families the tfjs export knows, by the prefix of their registry names. */
export const TFJS_FAMILIES: readonly string[] = [
  'resnet*',
  'wide_resnet*',
  'mobilenet_v3_*',
  'efficientnet_*',
];

function familyOf(arch: string): Family | null {
  if (/^(wide_)?resnet/.test(arch)) return 'resnet';
  if (arch.startsWith('mobilenet_v3_')) return 'mobilenet_v3';
  if (arch.startsWith('efficientnet_')) return 'efficientnet';
  return null;
}

/** Reads parameters by name as tfjs-layout values and remembers which were read. */
class WeightReader {
  readonly used = new Set<string>();
  private readonly names: Set<string>;

  constructor(private readonly params: Params) {
    this.names = new Set(params.names());
  }

  has(name: string): boolean {
    return this.names.has(name);
  }

  layout(name: string): string {
    return this.params.layout(name);
  }

  /** The tfjs-layout shape of `name`, without reading its values. */
  shape(name: string): readonly number[] {
    return this.params.get(name).shape;
  }

  get(name: string): WeightValues {
    if (!this.has(name)) throw new Error(`tfjs export: the model has no parameter '${name}'`);
    const t = this.params.get(name);
    this.used.add(name);
    return { shape: t.shape, values: Float32Array.from(t.dataSync() as Float32Array) };
  }
}

/** The shared vocabulary of the family graphs: convolutions, BatchNorm, activations, SE. */
class Builder {
  constructor(
    readonly g: LayersGraph,
    readonly w: WeightReader,
    private readonly eps: number,
  ) {}

  /** The convolution `name` with PyTorch's symmetric padding `(k - 1) / 2`. */
  conv(name: string, x: Node, stride: number, bias = false): Node {
    const kernel = this.w.get(`${name}.weight`);
    const pad = (kernel.shape[0]! - 1) >> 1;
    const explicit = pad > 0 && stride !== 1;
    const input = explicit ? this.g.zeroPad(`${name}.pad`, x, pad) : x;
    return this.g.conv2d(name, input, {
      kernel,
      ...(bias ? { bias: this.w.get(`${name}.bias`) } : {}),
      stride,
      padding: pad > 0 && !explicit ? 'same' : 'valid',
      depthwise: this.w.layout(`${name}.weight`) === 'depthwise',
    });
  }

  /** The BatchNorm `name` with its running statistics. */
  bn(name: string, x: Node): Node {
    return this.g.batchNorm(name, x, {
      gamma: this.w.get(`${name}.weight`),
      beta: this.w.get(`${name}.bias`),
      mean: this.w.get(`${name}.running_mean`),
      variance: this.w.get(`${name}.running_var`),
      epsilon: this.eps,
    });
  }

  /** PyTorch's activation `kind` from standard layers; the last layer is called `name`. */
  act(name: string, x: Node, kind: Activation): Node {
    switch (kind) {
      case 'relu':
        return this.g.relu(name, x);
      case 'relu6':
        return this.g.relu(name, x, 6);
      case 'hardsigmoid':
        // relu6(x + 3) / 6 = min(max(x / 6 + 1/2, 0), 1)
        return this.g.relu(name, this.g.rescale(`${name}.affine`, x, 1 / 6, 0.5), 1);
      case 'hardswish':
        return this.g.multiply(name, x, this.act(`${name}.gate`, x, 'hardsigmoid'));
      case 'silu':
        return this.g.activation(name, x, 'swish');
      case 'sigmoid':
        return this.g.activation(name, x, 'sigmoid');
      case 'identity':
        return x;
    }
  }

  /** torchvision's `Conv2dNormActivation`: `<prefix>.0` conv, `<prefix>.1` BN, activation. */
  convNormAct(prefix: string, x: Node, stride: number, kind: Activation): Node {
    const y = this.bn(`${prefix}.1`, this.conv(`${prefix}.0`, x, stride));
    return this.act(`${prefix}.2`, y, kind);
  }

  /** Squeeze-excitation `<prefix>.fc1` / `.fc2` (1x1 convs with bias) gating the channels. */
  squeezeExcite(prefix: string, x: Node, inner: Activation, gate: Activation): Node {
    const c = x.shape[2]!;
    const pooled = this.g.globalAvgPool(`${prefix}.avgpool`, x);
    let s = this.g.reshape(`${prefix}.avgpool.keepdims`, pooled, [1, 1, c]);
    s = this.act(`${prefix}.activation`, this.conv(`${prefix}.fc1`, s, 1, true), inner);
    s = this.act(`${prefix}.scale_activation`, this.conv(`${prefix}.fc2`, s, 1, true), gate);
    return this.g.multiply(`${prefix}.scale`, x, s);
  }
}

/**
 * ResNet stem and `layer1..4`, blocks found by their parameter names: the first block of
 * layers 2 to 4 has stride 2, on its first 3x3 conv (torchvision's V1.5 bottleneck).
 */
function resnetFeatures(b: Builder, x: Node, smallStem: boolean): Node {
  let y = b.act('relu', b.bn('bn1', b.conv('conv1', x, smallStem ? 1 : 2)), 'relu');
  if (!smallStem) {
    // PyTorch's max-pool pads with -inf; zeros change nothing after the ReLU (inputs >= 0).
    y = b.g.maxPool('maxpool', b.g.zeroPad('maxpool.pad', y, 1), 3, 2);
  }
  for (let s = 1; b.w.has(`layer${s}.0.conv1.weight`); s++) {
    for (let k = 0; b.w.has(`layer${s}.${k}.conv1.weight`); k++) {
      const p = `layer${s}.${k}`;
      const stride = s > 1 && k === 0 ? 2 : 1;
      let branch = y;
      let strided = false;
      for (let i = 1; b.w.has(`${p}.conv${i}.weight`); i++) {
        if (i > 1) branch = b.act(`${p}.relu${i - 1}`, branch, 'relu');
        const is3x3 = b.w.shape(`${p}.conv${i}.weight`)[0] === 3;
        const convStride = is3x3 && !strided ? stride : 1;
        strided ||= is3x3;
        branch = b.bn(`${p}.bn${i}`, b.conv(`${p}.conv${i}`, branch, convStride));
      }
      const identity = b.w.has(`${p}.downsample.0.weight`)
        ? b.bn(`${p}.downsample.1`, b.conv(`${p}.downsample.0`, y, stride))
        : y;
      y = b.act(`${p}.relu`, b.g.add(`${p}.add`, branch, identity), 'relu');
    }
  }
  return y;
}

/** MobileNetV3 `features.0..n+1` from the variant's rows (kernel, SE, activation, stride). */
function mobileNetFeatures(b: Builder, x: Node, arch: string, smallStem: boolean): Node {
  const rows = MOBILENET_V3_VARIANTS[arch]!.rows;
  let y = b.convNormAct('features.0', x, smallStem ? 1 : 2, 'hardswish');
  rows.forEach(([, , , se, actName, stride], r) => {
    const p = `features.${r + 1}.block`;
    const act: Activation = actName === 'HS' ? 'hardswish' : 'relu';
    let j = 0;
    let z = y;
    // The 1x1 expansion is there unless the expanded width equals the input's.
    if (b.w.layout(`${p}.0.0.weight`) !== 'depthwise') z = b.convNormAct(`${p}.${j++}`, z, 1, act);
    z = b.convNormAct(`${p}.${j++}`, z, stride, act);
    if (se) z = b.squeezeExcite(`${p}.${j++}`, z, 'relu', 'hardsigmoid');
    z = b.convNormAct(`${p}.${j++}`, z, 1, 'identity');
    y = stride === 1 && z.shape[2] === y.shape[2] ? b.g.add(`features.${r + 1}.add`, z, y) : z;
  });
  return b.convNormAct(`features.${rows.length + 1}`, y, 1, 'hardswish');
}

/** EfficientNet `features.0..8`: MBConv blocks found by name, SiLU, SE with a sigmoid gate. */
function efficientNetFeatures(b: Builder, x: Node, smallStem: boolean): Node {
  let y = b.convNormAct('features.0', x, smallStem ? 1 : 2, 'silu');
  EFFICIENTNET_STRIDES.forEach((stageStride, s) => {
    for (let k = 0; b.w.has(`features.${s + 1}.${k}.block.0.0.weight`); k++) {
      const p = `features.${s + 1}.${k}.block`;
      const stride = k === 0 ? stageStride : 1;
      let j = 0;
      let z = y;
      if (b.w.layout(`${p}.0.0.weight`) !== 'depthwise')
        z = b.convNormAct(`${p}.${j++}`, z, 1, 'silu');
      z = b.convNormAct(`${p}.${j++}`, z, stride, 'silu');
      z = b.squeezeExcite(`${p}.${j++}`, z, 'silu', 'sigmoid');
      z = b.convNormAct(`${p}.${j++}`, z, 1, 'identity');
      // Stochastic depth acts in training only; eval adds the whole branch.
      y =
        stride === 1 && z.shape[2] === y.shape[2] ? b.g.add(`features.${s + 1}.${k}.add`, z, y) : z;
    }
  });
  return b.convNormAct(`features.${EFFICIENTNET_STRIDES.length + 1}`, y, 1, 'silu');
}

/** The backbone part of an exported model: the graph, its input and its feature output. */
export interface BackboneGraph {
  graph: LayersGraph;
  /** `[height, width, inChannels]` images in. */
  input: Node;
  /** What the backbone's `apply` returns, `[featureDim]`. */
  feature: Node;
}

/**
 * The eval-mode forward pass of `net` on `params` as a Keras graph with input
 * `[inputSize, inputSize, inChannels]` and output `net.apply`'s feature (the pooled feature,
 * or MobileNetV3's head feature with `output: 'head'`).
 * @throws for an architecture outside `TFJS_FAMILIES`, a backbone parameter the graph did not
 *   use, or an input too small for the network, naming the architecture.
 */
export function backboneGraph(
  net: Backbone,
  params: Params,
  options: BackboneOptions,
  inputSize: number,
): BackboneGraph {
  const family = familyOf(net.arch);
  if (!family) {
    throw new Error(
      `tfjs export: architecture '${net.arch}' is not supported; supported: ${TFJS_FAMILIES.join(', ')}`,
    );
  }
  const g = new LayersGraph();
  const w = new WeightReader(params);
  const b = new Builder(g, w, BN_EPS[family]);
  const input = g.input('input', [inputSize, inputSize, net.inChannels]);
  const smallStem = options.smallStem === true;

  let map: Node;
  if (family === 'resnet') map = resnetFeatures(b, input, smallStem);
  else if (family === 'mobilenet_v3') map = mobileNetFeatures(b, input, net.arch, smallStem);
  else map = efficientNetFeatures(b, input, smallStem);
  let feature = g.globalAvgPool('avgpool', map);
  if (options.output === 'head') {
    const head = g.dense('classifier.0', feature, {
      kernel: w.get('classifier.0.weight'),
      bias: w.get('classifier.0.bias'),
    });
    feature = b.act('classifier.1', head, 'hardswish');
  }
  if (feature.shape[0] !== net.featureDim) {
    throw new Error(
      `tfjs export: ${net.arch} graph ends in ${feature.shape[0]} features, the backbone in ` +
        `${net.featureDim}`,
    );
  }

  // Every backbone tensor must have been read: the projection head (`head.*`), torchvision's
  // classifier and, without `output: 'head'`, MobileNetV3's `classifier.0` take no part.
  const unread = params
    .names()
    .filter((n) => !w.used.has(n) && !n.startsWith('head.') && !/^(fc|classifier)\./.test(n));
  if (unread.length > 0) {
    throw new Error(
      `tfjs export: the ${net.arch} graph did not use ${unread.length} backbone tensors ` +
        `(${unread.slice(0, 4).join(', ')}${unread.length > 4 ? ', ...' : ''}); the exporter ` +
        `does not match this backbone`,
    );
  }
  return { graph: g, input, feature };
}
