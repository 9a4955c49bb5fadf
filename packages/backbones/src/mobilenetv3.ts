/**
 * MobileNetV3 Small and Large (Howard et al., "Searching for MobileNetV3", ICCV 2019,
 * https://arxiv.org/abs/1905.02244) as torchvision 0.14's `mobilenetv3.py` builds them: the
 * inverted-residual rows of the paper's Tables 1 and 2, squeeze-excitation with a hard-sigmoid
 * gate, BN eps 0.001 momentum 0.01, channels rounded by `makeDivisible(c * width, 8)`, and
 * torchvision's state-dict names (`features.<i>.block.<j>...`, `classifier.0`, `classifier.3`).
 */
import { activate, Linear, tf } from '@disco/core';
import type { Activation, ForwardContext, Module, Params, Rng } from '@disco/core';
import { BackboneBase } from './backbone.js';
import type { BackboneOptions } from './backbone.js';
import { ConvNormAct, ResidualStack, SqueezeExcitation } from './blocks.js';
import { resolveOptions } from './options.js';

/** One inverted-residual block: kernel, expanded channels, out channels, SE, activation, stride. */
export type Row = readonly [number, number, number, boolean, 'RE' | 'HS', number];

/** One MobileNetV3 variant: stem width, block rows, head width. @inline */
interface MobileNetV3Variant {
  /** Stem output channels (before the width multiplier). */
  stem: number;
  /** The inverted-residual blocks in order, one row each (see `Row`). */
  rows: readonly Row[];
  /** Width of `classifier.0`, the head feature. */
  lastChannel: number;
}

/** The variants, with torchvision's rows (comments: input resolution at 224x224). */
export const MOBILENET_V3_VARIANTS: Readonly<Record<string, MobileNetV3Variant>> = {
  mobilenet_v3_small: {
    stem: 16,
    rows: [
      [3, 16, 16, true, 'RE', 2], // 112x112
      [3, 72, 24, false, 'RE', 2], // 56x56
      [3, 88, 24, false, 'RE', 1],
      [5, 96, 40, true, 'HS', 2], // 28x28
      [5, 240, 40, true, 'HS', 1],
      [5, 240, 40, true, 'HS', 1],
      [5, 120, 48, true, 'HS', 1],
      [5, 144, 48, true, 'HS', 1],
      [5, 288, 96, true, 'HS', 2], // 14x14
      [5, 576, 96, true, 'HS', 1],
      [5, 576, 96, true, 'HS', 1],
    ],
    lastChannel: 1024,
  },
  mobilenet_v3_large: {
    stem: 16,
    rows: [
      [3, 16, 16, false, 'RE', 1], // 112x112
      [3, 64, 24, false, 'RE', 2],
      [3, 72, 24, false, 'RE', 1], // 56x56
      [5, 72, 40, true, 'RE', 2],
      [5, 120, 40, true, 'RE', 1], // 28x28
      [5, 120, 40, true, 'RE', 1],
      [3, 240, 80, false, 'HS', 2],
      [3, 200, 80, false, 'HS', 1], // 14x14
      [3, 184, 80, false, 'HS', 1],
      [3, 184, 80, false, 'HS', 1],
      [3, 480, 112, true, 'HS', 1],
      [3, 672, 112, true, 'HS', 1],
      [5, 672, 160, true, 'HS', 2],
      [5, 960, 160, true, 'HS', 1], // 7x7
      [5, 960, 160, true, 'HS', 1],
    ],
    lastChannel: 1280,
  },
};

/** BatchNorm settings of torchvision's MobileNetV3. */
const BN = { eps: 0.001, momentum: 0.01 };

/** MobileNetV3's squeeze-excitation activations. */
const SE_ACTS = { inner: 'relu', gate: 'hardsigmoid' } as const;

/**
 * The channel rounding of the TensorFlow MobileNet code that torchvision keeps: the nearest
 * multiple of `divisor` (at least `divisor`), one step up if that lost more than 10%.
 */
export function makeDivisible(value: number, divisor = 8): number {
  let rounded = Math.max(divisor, Math.floor(Math.floor(value + divisor / 2) / divisor) * divisor);
  if (rounded < 0.9 * value) rounded += divisor;
  return rounded;
}

/**
 * An inverted residual, `features.<i>.block.<j>`: 1x1 expansion (skipped when the expanded width
 * equals the input's), depthwise kxk with the stride, optional SE, 1x1 linear projection; the
 * input is added back when the stride is 1 and the widths match.
 */
class InvertedResidual extends ResidualStack {
  protected readonly residual: boolean;

  constructor(prefix: string, inChannels: number, row: Row, width: number) {
    super();
    const [kernel, expandedBase, outBase, se, actName, stride] = row;
    const expanded = makeDivisible(expandedBase * width);
    const out = makeDivisible(outBase * width);
    const act: Activation = actName === 'HS' ? 'hardswish' : 'relu';
    const block = (): string => `${prefix}.block.${this.layers.length}`;

    if (expanded !== inChannels) {
      this.layers.push(
        new ConvNormAct(block(), { in: inChannels, out: expanded, kernel: 1 }, act, BN),
      );
    }
    this.layers.push(
      new ConvNormAct(
        block(),
        { in: expanded, out: expanded, kernel, stride, depthwise: true },
        act,
        BN,
      ),
    );
    if (se) {
      const squeeze = makeDivisible(Math.floor(expanded / 4));
      this.layers.push(new SqueezeExcitation(block(), expanded, squeeze, SE_ACTS));
    }
    this.layers.push(new ConvNormAct(block(), { in: expanded, out, kernel: 1 }, 'identity', BN));
    this.residual = stride === 1 && inChannels === out;
  }
}

/**
 * A torchvision MobileNetV3. `features.0`: 3x3 stride-2 stem conv + BN + Hardswish (stride 1
 * with `smallStem`, for 32x32 inputs); `features.1..n`: the rows; `features.n+1`: 1x1 conv to
 * 6x the last row's width + BN + Hardswish; global average pooling (the pooled feature);
 * `classifier.0` Linear + Hardswish (the head feature, always built so torchvision checkpoints
 * load; with `output: 'pooled'` and no classifier it takes no part and gets no gradient);
 * `classifier.3` Linear to the classes when built with `withClassifier`.
 *
 * Not applied: torchvision's `classifier.2` Dropout(0.2) before `classifier.3` (it only acts on
 * the logits of supervised training; self-supervised training uses the pooled or head
 * feature), so training-mode logits are the eval-mode ones; the pooled and head features are
 * exact.
 */
export class MobileNetV3 extends BackboneBase {
  protected readonly classifier: Linear | null;
  private readonly features: Module<tf.Tensor4D, tf.Tensor4D>[] = [];
  private readonly head: Linear;

  /**
   * @param arch a key of `MOBILENET_V3_VARIANTS`.
   * @param opts `widthMultiplier` is torchvision's `width_mult` (every width, the head included,
   *   through `makeDivisible(c * width, 8)`); `output: 'head'` makes `apply` return the head.
   * @throws for an unknown variant or a bad option, naming it.
   */
  constructor(arch: string, opts?: BackboneOptions) {
    const variant = MOBILENET_V3_VARIANTS[arch];
    if (!variant) {
      throw new Error(
        `MobileNetV3: unknown variant '${arch}'; known: ` +
          Object.keys(MOBILENET_V3_VARIANTS).join(', '),
      );
    }
    const o = resolveOptions('MobileNetV3', arch, opts, true);
    const width = o.widthMultiplier;
    const lastRow = variant.rows[variant.rows.length - 1]!;
    const pooledDim = 6 * makeDivisible(lastRow[2] * width);
    const headDim = makeDivisible(variant.lastChannel * width);
    super({
      arch,
      inChannels: o.inChannels,
      pooledDim,
      headDim,
      numClasses: o.numClasses,
      output: o.output,
    });

    let c = makeDivisible(variant.stem * width);
    const stem = { in: o.inChannels, out: c, kernel: 3, stride: o.smallStem ? 1 : 2 };
    this.features.push(new ConvNormAct('features.0', stem, 'hardswish', BN));
    for (const row of variant.rows) {
      this.features.push(new InvertedResidual(`features.${this.features.length}`, c, row, width));
      c = makeDivisible(row[2] * width);
    }
    const last = { in: c, out: pooledDim, kernel: 1 };
    this.features.push(new ConvNormAct(`features.${this.features.length}`, last, 'hardswish', BN));

    const linear = { normalStd: 0.01 };
    this.head = new Linear('classifier.0', {
      inFeatures: pooledDim,
      outFeatures: headDim,
      init: linear,
    });
    this.classifier =
      o.numClasses > 0
        ? new Linear('classifier.3', {
            inFeatures: headDim,
            outFeatures: o.numClasses,
            init: linear,
          })
        : null;
  }

  /** Convs: kaiming-normal fan-out, bias 0; BN: weight 1, bias 0; Linear: N(0, 0.01^2), bias 0. */
  init(params: Params, rng: Rng): void {
    for (const layer of this.features) layer.init(params, rng);
    this.head.init(params, rng);
    this.classifier?.init(params, rng);
  }

  protected featureMap(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    let y = x;
    for (const layer of this.features) y = layer.apply(params, y, ctx);
    return y;
  }

  protected override headFeature(params: Params, pooled: tf.Tensor2D): tf.Tensor2D {
    return activate(this.head.apply(params, pooled), 'hardswish');
  }
}
