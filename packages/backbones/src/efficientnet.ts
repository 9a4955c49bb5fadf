/**
 * EfficientNet-B0 and -B1 (Tan and Le, "EfficientNet: Rethinking Model Scaling for
 * Convolutional Neural Networks", ICML 2019, https://arxiv.org/abs/1905.11946) as torchvision
 * 0.14's `efficientnet.py` builds them: the seven MBConv stages of the paper's Table 1, scaled by
 * a width factor (channels through `makeDivisible(c * width, 8)`) and a depth factor (layers
 * rounded up), squeeze-excitation with SiLU and a sigmoid gate, SiLU everywhere else, BN eps
 * 1e-5 momentum 0.1 (PyTorch's defaults, not the 1e-3 of the TensorFlow original), and
 * torchvision's state-dict names (`features.<stage>.<block>.block.<j>...`, `classifier.1`).
 */
import { Linear, tf } from '@disco/core';
import type { ForwardContext, Module, Params, Rng } from '@disco/core';
import { BackboneBase } from './backbone.js';
import type { BackboneOptions } from './backbone.js';
import { ConvNormAct, ResidualStack, SqueezeExcitation } from './blocks.js';
import { makeDivisible } from './mobilenetv3.js';
import { resolveOptions } from './options.js';

/** One MBConv stage of B0: expand ratio, kernel, stride, in channels, out channels, layers. */
type Stage = readonly [number, number, number, number, number, number];

/** The B0 stages (comments: the stage's output resolution at 224x224 input). */
const STAGES: readonly Stage[] = [
  [1, 3, 1, 32, 16, 1], // features.1, 112x112
  [6, 3, 2, 16, 24, 2], // features.2, 56x56
  [6, 5, 2, 24, 40, 2], // features.3, 28x28
  [6, 3, 2, 40, 80, 3], // features.4, 14x14
  [6, 5, 1, 80, 112, 3], // features.5, 14x14
  [6, 5, 2, 112, 192, 4], // features.6, 7x7
  [6, 3, 1, 192, 320, 1], // features.7, 7x7
];

/** One EfficientNet variant: B0's stages scaled in width and depth. @inline */
interface EfficientNetVariant {
  /** Channel scale of every stage (torchvision's `width_mult`). */
  width: number;
  /** Layer scale of every stage, rounded up (torchvision's `depth_mult`). */
  depth: number;
  /** torchvision's `classifier.0` Dropout probability (not applied here, see the class). */
  dropout: number;
}

/** The variants: B1 is B0 with 10% more layers per stage, rounded up. */
export const EFFICIENTNET_VARIANTS: Readonly<Record<string, EfficientNetVariant>> = {
  efficientnet_b0: { width: 1.0, depth: 1.0, dropout: 0.2 },
  efficientnet_b1: { width: 1.0, depth: 1.1, dropout: 0.2 },
};

/** BatchNorm settings of torchvision's EfficientNet-B0..B7. */
const BN = { eps: 1e-5, momentum: 0.1 };

/** EfficientNet's squeeze-excitation activations. */
const SE_ACTS = { inner: 'silu', gate: 'sigmoid' } as const;

/** Stochastic depth probability of the last block; block i of n gets `0.2 * i / n`. */
const STOCHASTIC_DEPTH_PROB = 0.2;

/** The shape of one MBConv block, after width and depth scaling. */
interface BlockConfig {
  in: number;
  out: number;
  expand: number;
  kernel: number;
  stride: number;
}

/**
 * A mobile inverted bottleneck, `features.<i>.<j>.block.<k>`: 1x1 expansion + BN + SiLU (skipped
 * at expand ratio 1), depthwise kxk with the stride + BN + SiLU, squeeze-excitation whose
 * bottleneck is `max(1, floor(in / 4))` of the block's input (not expanded) width, 1x1 linear
 * projection + BN; the input is added back when the stride is 1 and the widths match.
 */
class MBConv extends ResidualStack {
  protected readonly residual: boolean;

  /**
   * @param stochasticDepthProb torchvision's row-mode StochasticDepth probability for this
   *   block's residual branch in training; recorded, not applied (see the note below the constructor).
   */
  constructor(
    prefix: string,
    cfg: BlockConfig,
    readonly stochasticDepthProb: number,
  ) {
    super();
    const expanded = makeDivisible(cfg.in * cfg.expand);
    const block = (): string => `${prefix}.block.${this.layers.length}`;

    if (expanded !== cfg.in) {
      this.layers.push(
        new ConvNormAct(block(), { in: cfg.in, out: expanded, kernel: 1 }, 'silu', BN),
      );
    }
    const depthwise = { in: expanded, out: expanded, kernel: cfg.kernel, stride: cfg.stride };
    this.layers.push(new ConvNormAct(block(), { ...depthwise, depthwise: true }, 'silu', BN));
    const squeeze = Math.max(1, Math.floor(cfg.in / 4));
    this.layers.push(new SqueezeExcitation(block(), expanded, squeeze, SE_ACTS));
    this.layers.push(
      new ConvNormAct(block(), { in: expanded, out: cfg.out, kernel: 1 }, 'identity', BN),
    );
    this.residual = cfg.stride === 1 && cfg.in === cfg.out;
  }

  // Stochastic depth is off (see `ResidualStack.apply`): torchvision's supervised recipe
  // zeroes the residual branch per sample with probability `stochasticDepthProb` in
  // training, but DisCo trains its EfficientNet students with drop_path_rate 0 (DISCO-SPEC
  // 3), and ForwardContext carries no random stream. Eval outputs equal torchvision's.
}

/**
 * torchvision's EfficientNet Linear init, which core's `Linear` lacks: weight
 * U(-1/sqrt(out), 1/sqrt(out)) (the bound from the output width), bias 0.
 */
function initLinearEfficientNet(linear: Linear, params: Params, rng: Rng): void {
  linear.init(params, rng);
  const bound = 1 / Math.sqrt(linear.cfg.outFeatures);
  const weight = params.get(`${linear.name}.weight`);
  const bias = params.get(`${linear.name}.bias`);
  const values = rng.uniformArray(weight.size, -bound, bound);
  tf.tidy(() => {
    weight.assign(tf.tensor(values, weight.shape));
    bias.assign(tf.zerosLike(bias));
  });
}

/**
 * A torchvision EfficientNet (B0, B1). `features.0`: 3x3 stride-2 stem conv to 32 channels + BN
 * + SiLU (stride 1 with `smallStem`, for 32x32 inputs); `features.1..7`: the MBConv stages, the
 * first block of each with the stage's stride; `features.8`: 1x1 conv to 4x the last stage's
 * width (1280) + BN + SiLU; global average pooling (the pooled feature); `classifier.1` Linear
 * to the classes when built with `withClassifier`.
 *
 * Not applied (DisCo trains EfficientNet with drop_rate 0 and drop_path_rate 0): torchvision's
 * `classifier.0` Dropout(0.2) before `classifier.1`, so training-mode logits are the eval-mode
 * ones, and the per-block stochastic depth (see `MBConv.apply`). Eval-mode outputs equal
 * torchvision's.
 */
export class EfficientNet extends BackboneBase {
  protected readonly classifier: Linear | null;
  private readonly features: Module<tf.Tensor4D, tf.Tensor4D>[] = [];

  /**
   * @param arch a key of `EFFICIENTNET_VARIANTS`.
   * @param opts `widthMultiplier` multiplies the variant's width (every channel count, the
   *   last conv's included, through `makeDivisible(c * width, 8)`); `output: 'head'` is refused.
   * @throws for an unknown variant or a bad option, naming it.
   */
  constructor(arch: string, opts?: BackboneOptions) {
    const variant = EFFICIENTNET_VARIANTS[arch];
    if (!variant) {
      throw new Error(
        `EfficientNet: unknown variant '${arch}'; known: ` +
          Object.keys(EFFICIENTNET_VARIANTS).join(', '),
      );
    }
    const o = resolveOptions('EfficientNet', arch, opts, false);
    const width = variant.width * o.widthMultiplier;
    const stages = STAGES.map(([expand, kernel, stride, cin, cout, layers]) => ({
      expand,
      kernel,
      stride,
      in: makeDivisible(cin * width),
      out: makeDivisible(cout * width),
      layers: Math.ceil(layers * variant.depth),
    }));
    const lastStage = stages[stages.length - 1]!;
    const pooledDim = 4 * lastStage.out;
    super({
      arch,
      inChannels: o.inChannels,
      pooledDim,
      headDim: 0,
      numClasses: o.numClasses,
      output: 'pooled',
    });

    const stem = { in: o.inChannels, out: stages[0]!.in, kernel: 3, stride: o.smallStem ? 1 : 2 };
    this.features.push(new ConvNormAct('features.0', stem, 'silu', BN));

    const totalBlocks = stages.reduce((sum, s) => sum + s.layers, 0);
    let blockIndex = 0;
    stages.forEach((s, i) => {
      for (let j = 0; j < s.layers; j++) {
        const cfg = { ...s, in: j === 0 ? s.in : s.out, stride: j === 0 ? s.stride : 1 };
        const p = (STOCHASTIC_DEPTH_PROB * blockIndex++) / totalBlocks;
        this.features.push(new MBConv(`features.${i + 1}.${j}`, cfg, p));
      }
    });

    const last = { in: lastStage.out, out: pooledDim, kernel: 1 };
    this.features.push(new ConvNormAct(`features.${stages.length + 1}`, last, 'silu', BN));

    this.classifier =
      o.numClasses > 0
        ? new Linear('classifier.1', { inFeatures: pooledDim, outFeatures: o.numClasses })
        : null;
  }

  /**
   * Convs: kaiming-normal fan-out (PyTorch's fan-out for depthwise too), bias 0; BN: weight 1,
   * bias 0; `classifier.1`: U(-1/sqrt(classes), 1/sqrt(classes)), bias 0.
   */
  init(params: Params, rng: Rng): void {
    for (const layer of this.features) layer.init(params, rng);
    if (this.classifier) initLinearEfficientNet(this.classifier, params, rng);
  }

  protected featureMap(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    let y = x;
    for (const layer of this.features) y = layer.apply(params, y, ctx);
    return y;
  }
}
