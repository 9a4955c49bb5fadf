/**
 * @disco/core: the one tfjs engine of DisCo.js and the pieces every package shares.
 * @packageDocumentation
 */
export { tf } from './tf.js';
export { initBackend, BACKEND_ORDER, type BackendName, type BackendOptions } from './backend.js';
export {
  defaultWasmThreads,
  MAX_WASM_THREADS,
  startWasmBackend,
  wasmThreads,
} from './wasm-threads.js';
export { registerWasmTrainingKernels } from './kernels/index.js';
export { Rng, type RngState } from './rng.js';
export { Params, type Layout } from './params.js';
export {
  Conv2d,
  BatchNorm,
  BnStatsSink,
  Linear,
  activate,
  globalAvgPool,
  l2Normalize,
  type Activation,
  type BatchNormConfig,
  type Conv2dConfig,
  type ForwardContext,
  type LinearConfig,
  type Module,
} from './nn.js';
export { bindEncoder, Sequential, type Encoder } from './encoder.js';
export {
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  writeSafetensors,
  writeFileAtomic,
  rawToTensor,
  halfToFloat,
  floatToHalf,
  type RawTensor,
  type SafetensorsFile,
  type TensorToWrite,
} from './safetensors.js';
export {
  fromTorchLayout,
  toTorchLayout,
  torchShape,
  loadTorchStateDict,
  toTorchStateDict,
} from './torch-layout.js';
export { Sgd, cosineLr, type SgdConfig } from './optim.js';
export { registerFastBatchMatMul } from './fast/batch-matmul.js';
export {
  parsePth,
  readPth,
  extractStateDict,
  stripStateDictPrefix,
  PthError,
  PthFormatError,
  PthForbiddenGlobalError,
  PthStateDictError,
  PthUnsupportedError,
  PthGlobal,
  PthStorage,
  PthTensor,
  type ExtractStateDictOptions,
  type ExtractedStateDict,
  type PthDtype,
  type PthFile,
  type PthGlobalKind,
  type PthReadOptions,
  type PthValue,
} from './pth/index.js';
