/**
 * The frozen teacher of DisCo: a pre-trained encoder (backbone + its MoCo projection head)
 * whose L2-normalised 128-d embedding is the target of the student's consistency loss. It
 * takes no gradient and has no queue. The official code runs it with training-mode
 * BatchNorm (batch statistics), because `model.train()` is called on the whole wrapper;
 * that is the default here, `bnMode: 'eval'` is the documented alternative (SEED, CompRess).
 */
import { bindEncoder, type Encoder, l2Normalize, tf } from '@disco/core';

export type TeacherBnMode = 'train' | 'eval';

/** A frozen encoder producing normalised targets. */
export class Teacher {
  readonly encoder: Encoder;

  /**
   * @param encoder the pre-trained encoder; its parameters are copied into frozen variables.
   */
  constructor(
    encoder: Encoder,
    readonly bnMode: TeacherBnMode = 'train',
    readonly bnGroupSize?: number,
  ) {
    if (bnMode !== 'train' && bnMode !== 'eval') {
      throw new Error(`Teacher: bnMode must be 'train' or 'eval', got '${bnMode}'`);
    }
    this.encoder = bindEncoder(encoder.net, encoder.outDim, encoder.params.clone({ frozen: true }));
  }

  /** Normalised embeddings `[N, dim]` of images `[N, H, W, C]`, without gradients. */
  embed(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() =>
      l2Normalize(
        this.encoder.apply(x, { training: this.bnMode === 'train', bnGroupSize: this.bnGroupSize }),
      ),
    );
  }

  dispose(): void {
    this.encoder.params.dispose();
  }
}
