/**
 * @disco/backbones: ResNet-18/34/50/101/152, wide ResNet-50-2, MobileNetV3 Small/Large and
 * EfficientNet-B0/B1 with torchvision's parameter names (core converts the layouts), so PyTorch
 * checkpoints load as is.
 * @packageDocumentation
 */
export {
  BackboneBase,
  type Backbone,
  type BackboneOptions,
  type BackboneOutputs,
  type BackboneShape,
} from './backbone.js';
export { resolveOptions, type ResolvedOptions } from './options.js';
export { ResNet, RESNET_VARIANTS, scaleResNetWidth, maxPool3x3s2 } from './resnet.js';
export { MobileNetV3, MOBILENET_V3_VARIANTS, makeDivisible, type Row } from './mobilenetv3.js';
export { EfficientNet, EFFICIENTNET_VARIANTS } from './efficientnet.js';
export { initConvTorchvision } from './init.js';
export {
  createBackbone,
  listBackbones,
  buildBackboneEncoder,
  type BackboneEncoder,
} from './registry.js';
