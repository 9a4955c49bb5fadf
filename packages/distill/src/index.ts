/**
 * @disco/distill: DisCo — a frozen teacher and the consistency loss that pulls the student's
 * final embedding onto the teacher's, added to the student's MoCo v2 loss.
 * @packageDocumentation
 */
export { Teacher, type TeacherBnMode } from './teacher.js';
export { consistencyLoss, discoExtraLoss, DISCO_DEFAULTS, type DisCoConfig } from './disco.js';
