/**
 * @disco/distill: DisCo — a frozen teacher and the consistency loss that pulls the student's
 * final embedding onto the teacher's, added to the student's MoCo v2 loss.
 * @packageDocumentation
 */
export {
  adaptTeacherInput,
  Teacher,
  type Normalisation,
  type TeacherBnMode,
  type TeacherInput,
} from './teacher.js';
export { consistencyLoss, discoExtraLoss, DISCO_DEFAULTS, type DisCoConfig } from './disco.js';
export { EmbeddingQueue, type Objective, type ObjectiveStep } from './objectives.js';
export { Seed, SEED_DEFAULTS, seedLoss, type SeedConfig } from './seed.js';
export {
  CompRess,
  COMPRESS_DEFAULTS,
  compressLoss,
  type CompRessConfig,
  type CompRessVariant,
} from './compress.js';
