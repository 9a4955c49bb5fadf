/**
 * ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
 * https://arxiv.org/abs/1512.03385) and wide ResNet-50-2 (Zagoruyko and Komodakis, BMVC 2016,
 * https://arxiv.org/abs/1605.07146), laid out as torchvision's `resnet.py`: the V1.5 bottleneck
 * (stride on the 3x3 conv), a 1x1 conv + BN shortcut where the shape changes, torchvision's
 * state-dict names and initialisation. One table of variants, one table of stages, one builder.
 */
import { activate, BatchNorm, Conv2d, Linear, tf } from '@disco/core';
import type { ForwardContext, Module, Params, Rng } from '@disco/core';
import { BackboneBase } from './backbone.js';
import type { BackboneOptions } from './backbone.js';
import { resolveOptions } from './options.js';

/** The residual block of a variant: two 3x3 convolutions or a 1x1-3x3-1x1 bottleneck. @inline */
type BlockKind = 'basic' | 'bottleneck';

/** One ResNet variant: its block and stage depths. @inline */
interface ResNetVariant {
  /** The residual block of every stage. */
  block: BlockKind;
  /** Blocks in each of the four stages. */
  depths: readonly [number, number, number, number];
  /** torchvision's `width_per_group`: bottleneck inner width = planes * widthPerGroup / 64. */
  widthPerGroup: number;
}

/** The variants, one row each. */
export const RESNET_VARIANTS: Readonly<Record<string, ResNetVariant>> = {
  resnet18: { block: 'basic', depths: [2, 2, 2, 2], widthPerGroup: 64 },
  resnet34: { block: 'basic', depths: [3, 4, 6, 3], widthPerGroup: 64 },
  resnet50: { block: 'bottleneck', depths: [3, 4, 6, 3], widthPerGroup: 64 },
  resnet101: { block: 'bottleneck', depths: [3, 4, 23, 3], widthPerGroup: 64 },
  resnet152: { block: 'bottleneck', depths: [3, 8, 36, 3], widthPerGroup: 64 },
  wide_resnet50_2: { block: 'bottleneck', depths: [3, 4, 6, 3], widthPerGroup: 128 },
};

/** Stem width and the four stages (`layer1`..`layer4`): base width and first-block stride. */
const STEM_WIDTH = 64;
const STAGES = [
  { planes: 64, stride: 1 }, // 56x56 at 224x224 input (32x32 with smallStem on CIFAR)
  { planes: 128, stride: 2 }, // 28x28 (16x16)
  { planes: 256, stride: 2 }, // 14x14 (8x8)
  { planes: 512, stride: 2 }, // 7x7 (4x4)
] as const;

/** Output channels of a block relative to its base width. */
const EXPANSION: Record<BlockKind, number> = { basic: 1, bottleneck: 4 };

/**
 * The width-multiplier rule for ResNet: `max(8, round(width * multiplier))`, applied to the stem
 * and to each stage's base width (0.5 gives 32/64/128/256; 1 is torchvision exactly).
 */
export function scaleResNetWidth(width: number, multiplier: number): number {
  return Math.max(8, Math.round(width * multiplier));
}

/** One conv of a residual branch: kernel size, output channels, stride. */
interface BranchConv {
  kernel: number;
  out: number;
  stride: number;
}

/** The convs of a block's residual branch, as torchvision's BasicBlock and Bottleneck. */
function branchConvs(
  kind: BlockKind,
  planes: number,
  stride: number,
  widthPerGroup: number,
): BranchConv[] {
  if (kind === 'basic') {
    return [
      { kernel: 3, out: planes, stride },
      { kernel: 3, out: planes, stride: 1 },
    ];
  }
  const width = Math.floor((planes * widthPerGroup) / 64);
  return [
    { kernel: 1, out: width, stride: 1 },
    { kernel: 3, out: width, stride }, // V1.5: the stride sits on the 3x3 conv
    { kernel: 1, out: planes * EXPANSION.bottleneck, stride: 1 },
  ];
}

/**
 * A residual block: `conv{i}` + `bn{i}` (+ ReLU except after the last) on the branch, the
 * identity or a `downsample.0` 1x1 conv + `downsample.1` BN as the shortcut, their sum, ReLU.
 * `[n, h, w, in] -> [n, h / stride, w / stride, out]`.
 */
class ResidualBlock implements Module<tf.Tensor4D, tf.Tensor4D> {
  private readonly convs: Conv2d[] = [];
  private readonly bns: BatchNorm[] = [];
  private readonly shortcut: [Conv2d, BatchNorm] | null;

  constructor(prefix: string, inChannels: number, branch: BranchConv[]) {
    let c = inChannels;
    branch.forEach((b, i) => {
      const k = b.kernel;
      this.convs.push(
        new Conv2d(`${prefix}.conv${i + 1}`, {
          inChannels: c,
          outChannels: b.out,
          kernelSize: k,
          stride: b.stride,
          padding: (k - 1) >> 1,
        }),
      );
      this.bns.push(new BatchNorm(`${prefix}.bn${i + 1}`, { channels: b.out }));
      c = b.out;
    });
    const stride = Math.max(...branch.map((b) => b.stride));
    this.shortcut =
      stride !== 1 || inChannels !== c
        ? [
            new Conv2d(`${prefix}.downsample.0`, {
              inChannels,
              outChannels: c,
              kernelSize: 1,
              stride,
              padding: 0,
            }),
            new BatchNorm(`${prefix}.downsample.1`, { channels: c }),
          ]
        : null;
  }

  init(params: Params, rng: Rng): void {
    this.convs.forEach((conv, i) => {
      conv.init(params, rng);
      this.bns[i]!.init(params);
    });
    if (this.shortcut) {
      this.shortcut[0].init(params, rng);
      this.shortcut[1].init(params);
    }
  }

  apply(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    let y = x;
    const last = this.convs.length - 1;
    this.convs.forEach((conv, i) => {
      y = this.bns[i]!.apply(params, conv.apply(params, y), ctx) as tf.Tensor4D;
      if (i < last) y = activate(y, 'relu');
    });
    const identity = this.shortcut
      ? (this.shortcut[1].apply(params, this.shortcut[0].apply(params, x), ctx) as tf.Tensor4D)
      : x;
    return activate(tf.add(y, identity), 'relu');
  }
}

/**
 * PyTorch's `MaxPool2d(3, stride=2, padding=1)`: the padding never wins the max (PyTorch pads
 * with -inf). tfjs's numeric-padding max-pool skips padded positions on the cpu and wasm
 * backends, which the tests check on negative inputs. `[n, h, w, c] -> [n, ~h/2, ~w/2, c]`.
 */
export function maxPool3x3s2(x: tf.Tensor4D): tf.Tensor4D {
  return tf.maxPool(x, 3, 2, 1);
}

/**
 * A torchvision ResNet. Stem: `conv1` 7x7 stride 2 padding 3, `bn1`, ReLU, 3x3 max-pool stride 2
 * (with `smallStem`: `conv1` 3x3 stride 1 padding 1 and no max-pool, for 32x32 inputs). Then
 * `layer1`..`layer4`, global average pooling, and `fc` when built with a classifier.
 */
export class ResNet extends BackboneBase {
  protected readonly classifier: Linear | null;
  private readonly stem: { conv: Conv2d; bn: BatchNorm; maxPool: boolean };
  private readonly blocks: ResidualBlock[] = [];

  /**
   * @param arch a key of `RESNET_VARIANTS`.
   * @param opts `widthMultiplier` follows `scaleResNetWidth`; `output: 'head'` is refused.
   * @throws for an unknown variant or a bad option, naming it.
   */
  constructor(arch: string, opts?: BackboneOptions) {
    const variant = RESNET_VARIANTS[arch];
    if (!variant) {
      throw new Error(
        `ResNet: unknown variant '${arch}'; known: ${Object.keys(RESNET_VARIANTS).join(', ')}`,
      );
    }
    const o = resolveOptions('ResNet', arch, opts, false);
    const expansion = EXPANSION[variant.block];
    const lastPlanes = scaleResNetWidth(STAGES[3].planes, o.widthMultiplier);
    super({
      arch,
      inChannels: o.inChannels,
      pooledDim: lastPlanes * expansion,
      headDim: 0,
      numClasses: o.numClasses,
      output: 'pooled',
    });

    const stemWidth = scaleResNetWidth(STEM_WIDTH, o.widthMultiplier);
    const k = o.smallStem ? 3 : 7;
    this.stem = {
      conv: new Conv2d('conv1', {
        inChannels: o.inChannels,
        outChannels: stemWidth,
        kernelSize: k,
        stride: o.smallStem ? 1 : 2,
        padding: (k - 1) >> 1,
      }),
      bn: new BatchNorm('bn1', { channels: stemWidth }),
      maxPool: !o.smallStem,
    };

    let c = stemWidth;
    STAGES.forEach((stage, s) => {
      const planes = scaleResNetWidth(stage.planes, o.widthMultiplier);
      for (let b = 0; b < variant.depths[s]!; b++) {
        const stride = b === 0 ? stage.stride : 1;
        const branch = branchConvs(variant.block, planes, stride, variant.widthPerGroup);
        this.blocks.push(new ResidualBlock(`layer${s + 1}.${b}`, c, branch));
        c = branch[branch.length - 1]!.out;
      }
    });

    this.classifier =
      o.numClasses > 0 ? new Linear('fc', { inFeatures: c, outFeatures: o.numClasses }) : null;
  }

  /** Convs: kaiming-normal fan-out; BN: weight 1, bias 0; `fc`: PyTorch's Linear default. */
  init(params: Params, rng: Rng): void {
    this.stem.conv.init(params, rng);
    this.stem.bn.init(params);
    for (const block of this.blocks) block.init(params, rng);
    this.classifier?.init(params, rng);
  }

  protected featureMap(params: Params, x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    let y = this.stem.bn.apply(params, this.stem.conv.apply(params, x), ctx) as tf.Tensor4D;
    y = activate(y, 'relu');
    if (this.stem.maxPool) y = maxPool3x3s2(y);
    for (const block of this.blocks) y = block.apply(params, y, ctx);
    return y;
  }
}
