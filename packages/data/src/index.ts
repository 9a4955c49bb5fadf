/**
 * @disco/data: dataset readers (IDX / Fashion-MNIST, CIFAR-10/100, STL-10, image folders
 * decoded with sharp), a resumable shuffling batch loader and
 * the MoCo v2 augmentations run batched on the tfjs backend. Images are uint8 NHWC in memory
 * and float32 `[N, H, W, C]` tensors once on the backend.
 * @packageDocumentation
 */
export {
  readIdx,
  parseIdx,
  type IdxArray,
  type IdxDtype,
  type IdxOf,
  type ReadIdxOptions,
} from './idx.js';
export { assetPath } from './assets.js';
export { checkImageSet, type ImageSet } from './image-set.js';
export {
  loadFashionMnist,
  fashionMnistSubsetDir,
  FULL_FASHION_MNIST_DIR,
  FASHION_MNIST_CLASSES,
  FASHION_MNIST_MEAN,
  FASHION_MNIST_STD,
  type FashionMnistOptions,
} from './fashion-mnist.js';
export {
  loadImageFolder,
  ImageFolderError,
  BadImagesError,
  IMAGE_EXTENSIONS,
  type ImageFolderOptions,
  type ImageFolderSet,
  type SkippedImage,
} from './image-folder.js';
export {
  loadCifar10,
  loadCifar100,
  CIFAR10_CLASSES,
  type Cifar10Options,
  type Cifar100Options,
} from './cifar.js';
export {
  loadStl10,
  STL10_CLASSES,
  type Stl10Options,
  type Stl10Set,
  type Stl10Split,
} from './stl10.js';
export { BatchLoader, toFloatTensor, type Batch, type BatchLoaderConfig } from './loader.js';
export { sampleResizedCrop, cropBoxes, type CropWindow } from './crop.js';
export {
  grayscale,
  adjustBrightness,
  adjustContrast,
  adjustSaturation,
  adjustHue,
} from './color.js';
export { colorJitter, randomGrayscale, JITTER_IDENTITY, type JitterParams } from './jitter.js';
export { gaussianBlurBatch, gaussianTaps, blurRadius } from './blur.js';
export {
  mocoV2Augment,
  applyAugment,
  sampleAugmentParams,
  resolveAugmentConfig,
  MOCO_V2_AUGMENT,
  IMAGENET_MEAN,
  IMAGENET_STD,
  type AugmentConfig,
  type AugmentParams,
} from './augment.js';
