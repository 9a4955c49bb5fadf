/**
 * The backbone registry: every architecture by its torchvision name, built from its family's
 * table, plus a shortcut that binds one to a fresh parameter set as a core `Encoder`.
 */
import { bindEncoder } from '@disco/core';
import type { Encoder, Params, Rng } from '@disco/core';
import type { Backbone, BackboneOptions } from './backbone.js';
import { EFFICIENTNET_VARIANTS, EfficientNet } from './efficientnet.js';
import { MOBILENET_V3_VARIANTS, MobileNetV3 } from './mobilenetv3.js';
import { RESNET_VARIANTS, ResNet } from './resnet.js';

type Builder = (opts?: BackboneOptions) => Backbone;

const BUILDERS: ReadonlyMap<string, Builder> = new Map<string, Builder>([
  ...Object.keys(RESNET_VARIANTS).map((arch): [string, Builder] => [
    arch,
    (opts) => new ResNet(arch, opts),
  ]),
  ...Object.keys(MOBILENET_V3_VARIANTS).map((arch): [string, Builder] => [
    arch,
    (opts) => new MobileNetV3(arch, opts),
  ]),
  ...Object.keys(EFFICIENTNET_VARIANTS).map((arch): [string, Builder] => [
    arch,
    (opts) => new EfficientNet(arch, opts),
  ]),
]);

/** The registered architecture names, in table order (ResNets, MobileNetV3s, EfficientNets). */
export function listBackbones(): string[] {
  return [...BUILDERS.keys()];
}

/**
 * The architecture called `name` (torchvision's name: `resnet18`, `wide_resnet50_2`,
 * `mobilenet_v3_small`, `efficientnet_b0`, ...). Parameters are created by `init`, not here.
 * @throws for an unknown name (listing the known ones) or a bad option.
 */
export function createBackbone(name: string, opts?: BackboneOptions): Backbone {
  const build = BUILDERS.get(name);
  if (!build) {
    throw new Error(
      `createBackbone: unknown backbone '${name}'; known: ${listBackbones().join(', ')}`,
    );
  }
  return build(opts);
}

/** An `Encoder` whose network is a `Backbone`; its `outDim` is the backbone's `featureDim`. */
export interface BackboneEncoder extends Encoder {
  /** The backbone, with its widths and its other forward passes (`applyAll`, ...). */
  readonly net: Backbone;
}

/**
 * `createBackbone(name, opts)` bound to parameters: initialised from `init` when it is an `Rng`,
 * or the given `Params` used as they are. `apply` maps `[batch, h, w, inChannels]` images to
 * `[batch, featureDim]`.
 */
export function buildBackboneEncoder(
  name: string,
  opts: BackboneOptions | undefined,
  init: Rng | Params,
): BackboneEncoder {
  const net = createBackbone(name, opts);
  return { ...bindEncoder(net, net.featureDim, init), net };
}
