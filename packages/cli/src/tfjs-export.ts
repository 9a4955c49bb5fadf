/**
 * `disco export --format tfjs`: a trained backbone, and optionally a linear probe on its
 * feature, as a TensorFlow.js Layers model that a web page loads with stock
 * `tf.loadLayersModel` (`model.json` + `group1-shard1of1.bin`), and `disco.json` beside it:
 * the input size and the normalisation the page must apply, the classes of the probe.
 *
 * The model takes NHWC float32 images `[batch, size, size, channels]` normalised as in
 * training (`(pixel / 255 - mean) / std` per channel) and returns the backbone feature
 * `[batch, featureDim]`, or class probabilities `[batch, classes]` with a probe. The probe's
 * z-scoring of the feature is folded into its weights: `((f - mu) / sigma) W + b` is
 * `f (W / sigma) + (b - (mu / sigma) W)`, one Dense layer with a softmax.
 */
import { mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Backbone, BackboneOptions } from '@disco/backbones';
import { Rng, writeFileAtomic } from '@disco/core';
import type { ImageSet } from '@disco/data';
import { extractFeatures, linearProbe, type LinearProbeWeights } from '@disco/eval';
import { openTrainData } from './datasets.js';
import { preprocessFor } from './evaluate.js';
import { loadModelFile, modelFilePath, type BuiltEncoder, type ModelInfo } from './model-file.js';
import { backboneGraph } from './tfjs-backbones.js';
import type { LayersArtifacts } from './tfjs-graph.js';

/** The files of an export folder. */
export const TFJS_FILES = {
  /** The Layers model topology and weight manifest, for `tf.loadLayersModel`. */
  model: 'model.json',
  /** All weights, float32, in one shard. */
  weights: 'group1-shard1of1.bin',
  /** The model card (`TfjsModelCard`). */
  card: 'disco.json',
} as const;

/** A linear classifier on the backbone feature, as `linearProbe` of @disco/eval returns it. */
export interface TfjsHead {
  /** logits = ((feature - mean) / std) weight + bias; `weight` is `[featureDim, classes]`. */
  weights: LinearProbeWeights;
  /** One name per class, written to `disco.json` for the page to print. */
  classNames?: readonly string[];
  /** How the probe was fitted, recorded in `disco.json`. */
  fit?: {
    /** The data it was fitted on, in words (a folder and its format, or 'given image sets'). */
    data: string;
    /** Images the probe was trained on. */
    trainImages: number;
    /** Images it was scored on. */
    testImages: number;
    /** Top-1 on the training images, a fraction in [0, 1]. */
    trainTop1: number;
    /** Top-1 on the test images, a fraction in [0, 1]. */
    top1: number;
  };
}

/** `disco.json`: what a page needs to feed the model and read its output. */
export interface TfjsModelCard {
  /** The card's format and version. */
  format: 'disco-tfjs/1';
  /** The backbone's architecture name (`resnet18`, `mobilenet_v3_small`, ...). */
  arch: string;
  /** The options the backbone was built with, as in the encoder file's spec. */
  backbone: BackboneOptions;
  /** The model's input, batch excluded: `[height, width, channels]`, NHWC float32. */
  input: [number, number, number];
  /** Per-channel normalisation of [0, 1] pixels (one entry per input channel). */
  mean: number[];
  /** Per-channel standard deviation, paired with `mean`. */
  std: number[];
  /** The preprocessing training used, in words. */
  preprocess: string;
  /** `'feature'`: the backbone feature; `'probabilities'`: the probe's softmax. */
  output: 'feature' | 'probabilities';
  /** Width of the output. */
  outputDim: number;
  /** With a probe that has them: one name per output class. */
  classNames?: string[];
  /** With a probe: how it was fitted and how well it scored (`TfjsHead.fit`). */
  head?: TfjsHead['fit'];
  /** The model file exported, when it came from one. */
  source?: string;
}

/** Options of `buildTfjsModel` and `exportTfjs`. */
export interface TfjsExportOptions {
  /** A linear classifier on the feature: the model then returns class probabilities. */
  head?: TfjsHead;
  /** Side of the square input (default: the image size the model was trained at). */
  inputSize?: number;
}

/** A model in memory, as `loadModelFile` returns it (or `buildEncoder` plus its info). */
export type TfjsSource = BuiltEncoder & {
  /** The spec, input size and normalisation of the model. */
  info: ModelInfo;
};

/** An exported model in memory. */
export interface TfjsModel {
  /** `model.json`'s content and the weight bytes, as the files will hold them. */
  artifacts: LayersArtifacts;
  /** The content of `disco.json`. */
  card: TfjsModelCard;
  /** Keras layers in the graph, the input included. */
  layers: number;
}

const PREPROCESS =
  'RGB pixels (alpha flattened onto black) scaled to [0, 1], (x - mean) / std per channel; ' +
  'one-channel models take the ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B, in 16-bit fixed ' +
  'point, rounded) of the 8-bit pixels first; images of another size are resized to cover ' +
  'the input (shorter side) and centre-cropped';

function checkHead(head: TfjsHead, dim: number): number {
  const { weight, bias, mean, std } = head.weights;
  const classes = bias.length;
  const fields: [string, number, number][] = [
    ['weight', weight.length, dim * classes],
    ['mean', mean.length, dim],
    ['std', std.length, dim],
  ];
  if (classes < 2)
    throw new Error(`exportTfjs: head.weights.bias must hold >= 2 classes, got ${classes}`);
  for (const [field, got, want] of fields) {
    if (got !== want) {
      throw new Error(
        `exportTfjs: head.weights.${field} must hold ${want} values (feature width ${dim}, ` +
          `${classes} classes), got ${got}`,
      );
    }
  }
  if (head.classNames && head.classNames.length !== classes) {
    throw new Error(
      `exportTfjs: head.classNames has ${head.classNames.length} names for ${classes} classes`,
    );
  }
  return classes;
}

/** The probe with its z-scoring folded in (float64 sums): `f W' + b'`. */
function foldHead(w: LinearProbeWeights, dim: number, classes: number) {
  const kernel = new Float32Array(dim * classes);
  const bias = Float64Array.from(w.bias);
  for (let d = 0; d < dim; d++) {
    for (let c = 0; c < classes; c++) {
      const scaled = w.weight[d * classes + c]! / w.std[d]!;
      kernel[d * classes + c] = scaled;
      bias[c]! -= w.mean[d]! * scaled;
    }
  }
  return { kernel, bias: Float32Array.from(bias) };
}

/**
 * The Layers model of `model`'s backbone (eval mode), with the optional head, in memory.
 * @throws for an unsupported architecture, a bad `inputSize` or head, naming the field.
 */
export function buildTfjsModel(model: TfjsSource, opts: TfjsExportOptions = {}): TfjsModel {
  const net = model.backbone.net as Backbone;
  const info = model.info;
  const size = opts.inputSize ?? info.imageSize;
  if (!Number.isInteger(size) || size < 1) {
    throw new Error(`exportTfjs: inputSize must be a positive integer, got ${size}`);
  }
  const { graph, feature } = backboneGraph(net, model.backbone.params, info.spec.backbone, size);
  let output = feature;
  if (opts.head) {
    const classes = checkHead(opts.head, net.featureDim);
    const folded = foldHead(opts.head.weights, net.featureDim, classes);
    output = graph.dense('probe', feature, {
      kernel: { shape: [net.featureDim, classes], values: folded.kernel },
      bias: { shape: [classes], values: folded.bias },
      activation: 'softmax',
    });
  }
  const c = net.inChannels;
  const perChannel = (v: number[]) => (v.length === c ? [...v] : Array<number>(c).fill(v[0]!));
  const card: TfjsModelCard = {
    format: 'disco-tfjs/1',
    arch: net.arch,
    backbone: info.spec.backbone,
    input: [size, size, c],
    mean: perChannel(info.mean),
    std: perChannel(info.std),
    preprocess: PREPROCESS,
    output: opts.head ? 'probabilities' : 'feature',
    outputDim: output.shape[0]!,
    ...(opts.head?.classNames ? { classNames: [...opts.head.classNames] } : {}),
    ...(opts.head?.fit ? { head: opts.head.fit } : {}),
  };
  const artifacts = graph.toArtifacts(`disco_${net.arch}`, output, TFJS_FILES.weights);
  return { artifacts, card, layers: graph.layerCount };
}

/** What `exportTfjs` wrote. */
export interface TfjsExportResult extends TfjsModel {
  /** The three files, full paths. */
  files: string[];
  /** Size of the weight file in bytes. */
  weightBytes: number;
}

/**
 * Writes `model` (a model folder, an encoder file, or a model in memory) to `outDir`
 * (created) as `model.json`, `group1-shard1of1.bin` and `disco.json`.
 * @throws as `buildTfjsModel`, or naming the file when the model cannot be read.
 */
export function exportTfjs(
  model: string | TfjsSource,
  outDir: string,
  opts: TfjsExportOptions = {},
): TfjsExportResult {
  const m = typeof model === 'string' ? loadModelFile(model) : model;
  try {
    const built = buildTfjsModel(m, opts);
    if (typeof model === 'string') built.card.source = basename(modelFilePath(model));
    mkdirSync(outDir, { recursive: true });
    const files = [TFJS_FILES.weights, TFJS_FILES.model, TFJS_FILES.card].map((f) =>
      join(outDir, f),
    );
    writeFileAtomic(files[0]!, built.artifacts.weightData);
    writeFileAtomic(files[1]!, JSON.stringify(built.artifacts.modelJson));
    writeFileAtomic(files[2]!, `${JSON.stringify(built.card, null, 2)}\n`);
    return { ...built, files, weightBytes: built.artifacts.weightData.length };
  } finally {
    if (typeof model === 'string') m.encoder.params.dispose();
  }
}

/** Options of `fitTfjsHead`. */
export interface FitHeadOptions {
  /** Probe epochs (default 100, as `disco eval`). */
  epochs?: number;
  /** Seed of the probe's init and shuffles (default 0). */
  seed?: number;
  /** Named in `disco.json` as where the probe was fitted. */
  describe?: string;
}

/**
 * Fits a linear probe (`linearProbe` of @disco/eval) on the backbone features of `train` and
 * scores it on `test`, features taken exactly as the exported model computes them: eval-mode
 * BatchNorm with the model's own running statistics (no precise-BN pass, which would change
 * them), the model's normalisation. Images must have the model's channels.
 */
export async function fitTfjsHead(
  model: TfjsSource,
  train: ImageSet,
  test: ImageSet,
  opts: FitHeadOptions = {},
): Promise<TfjsHead> {
  const channels = (model.backbone.net as Backbone).inChannels;
  for (const [field, set] of [
    ['train', train],
    ['test', test],
  ] as const) {
    if (set.channels !== channels) {
      throw new Error(
        `fitTfjsHead: ${field} images have ${set.channels} channels, the model takes ${channels}`,
      );
    }
  }
  const preprocess = preprocessFor(model.info);
  const features = (set: ImageSet) =>
    extractFeatures(model.backbone, set.images, {
      count: set.count,
      height: set.height,
      width: set.width,
      channels: set.channels,
      batchSize: 250,
      preprocess,
    });
  let maxLabel = 0;
  for (const set of [train, test]) for (const y of set.labels) maxLabel = Math.max(maxLabel, y);
  const numClasses = Math.max(train.classNames.length, maxLabel + 1, 2);
  const r = await linearProbe({
    trainFeatures: await features(train),
    trainLabels: train.labels,
    testFeatures: await features(test),
    testLabels: test.labels,
    numClasses,
    epochs: opts.epochs ?? 100,
    rng: new Rng(opts.seed ?? 0),
    dim: model.backbone.outDim,
  });
  const names = train.classNames.length === numClasses ? train.classNames : undefined;
  return {
    weights: r.weights,
    ...(names ? { classNames: names } : {}),
    fit: {
      data: opts.describe ?? 'given image sets',
      trainImages: train.count,
      testImages: test.count,
      trainTop1: r.trainTop1,
      top1: r.top1,
    },
  };
}

/**
 * What `disco export --format tfjs` runs: loads the model, fits a probe on `fitHead`'s data
 * when asked (`true`: the shipped Fashion-MNIST subset), writes the export to `outDir`, and
 * returns the line to print.
 */
export async function runTfjsExport(
  model: string,
  outDir: string,
  opts: { fitHead?: string | true; epochs?: number; seed?: number } = {},
): Promise<string> {
  const m = loadModelFile(model);
  try {
    let head: TfjsHead | undefined;
    if (opts.fitHead !== undefined) {
      const channels = (m.backbone.net as Backbone).inChannels;
      const d = await openTrainData({
        ...(opts.fitHead === true ? {} : { data: opts.fitHead }),
        imageSize: m.info.imageSize,
        ...(channels === 1 || channels === 3 ? { channels } : {}),
      });
      if (!d.test) throw new Error(`export --fit-head: ${d.describe}; a probe needs labels`);
      head = await fitTfjsHead(m, d.evalTrain, d.test, { ...opts, describe: d.describe });
    }
    const r = exportTfjs(m, outDir, head ? { head } : {});
    const fit = head?.fit
      ? `; linear probe train top-1 ${(100 * head.fit.trainTop1).toFixed(2)}%, test top-1 ` +
        `${(100 * head.fit.top1).toFixed(2)}% (${head.fit.data})`
      : '';
    return (
      `exported ${r.card.arch} for TensorFlow.js: ${r.layers} layers, ` +
      `${(r.weightBytes / 2 ** 20).toFixed(1)} MiB of weights, input [${r.card.input}], ` +
      `output ${r.card.output} [${r.card.outputDim}] -> ${outDir}${fit}`
    );
  } finally {
    m.encoder.params.dispose();
  }
}
