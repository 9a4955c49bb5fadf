/**
 * Safe reading of PyTorch checkpoints (`torch.save` ZIP containers, `.pth` / `.pth.tar`):
 * a ZIP reader, a restricted unpickler that only resolves an allowlist of globals, tensor
 * views decoded to `RawTensor`s, and the search for a state dict inside a checkpoint.
 */
export {
  PthError,
  PthFormatError,
  PthForbiddenGlobalError,
  PthStateDictError,
  PthUnsupportedError,
} from './errors.js';
export { parsePth, readPth, type PthFile, type PthReadOptions, type PthValue } from './read.js';
export {
  extractStateDict,
  stripStateDictPrefix,
  type ExtractStateDictOptions,
  type ExtractedStateDict,
} from './state-dict.js';
export { PthStorage, PthTensor, type PthDtype } from './tensor.js';
export { PthGlobal, type PthGlobalKind } from './torch-policy.js';
