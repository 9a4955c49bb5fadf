/**
 * @disco/heads: the projection MLP used during self-supervised training and the linear
 * classifier used to evaluate frozen features.
 * @packageDocumentation
 */
export { ProjectionHead, type ProjectionHeadConfig } from './projection.js';
export { LinearClassifier, type LinearClassifierConfig } from './classifier.js';
