/**
 * The frozen teacher of DisCo: a pre-trained encoder (backbone + its MoCo projection head)
 * whose L2-normalised 128-d embedding is the target of the student's consistency loss. It
 * takes no gradient and has no queue. The official code runs it with training-mode
 * BatchNorm (batch statistics), because `model.train()` is called on the whole wrapper;
 * that is the default here, `bnMode: 'eval'` is the documented alternative (SEED, CompRess).
 */
import { bindEncoder, type Encoder, l2Normalize, tf } from '@disco/core';

/**
 * How the teacher's BatchNorm layers run: `train` normalises with batch statistics (the
 * official DisCo code), `eval` with the running statistics of its checkpoint (SEED, CompRess).
 */
export type TeacherBnMode = 'train' | 'eval';

/** Per-channel normalisation of [0, 1] images (one value for all channels is allowed). */
export interface Normalisation {
  /** Per-channel mean, subtracted. */
  mean: readonly number[];
  /** Per-channel standard deviation, divided by. */
  std: readonly number[];
}

/**
 * How the student's views become the teacher's input when the teacher was trained on other
 * images: undo the student's normalisation, repeat a grayscale channel for an RGB teacher,
 * resize to the teacher's side (bilinear, half-pixel centres, as PyTorch's `interpolate` with
 * `align_corners=False`), and apply the teacher's normalisation. The teacher sees the same
 * view as the student, as DisCo requires, only in its own input format.
 */
export interface TeacherInput {
  /** The normalisation the views carry. */
  from: Normalisation;
  /** The teacher's normalisation, channel count and image side. */
  to: Normalisation & {
    /** Channels of the teacher's input (a 1-channel view is repeated to match). */
    channels: number;
    /** Side of the teacher's square input, in pixels. */
    size: number;
  };
}

function channelVector(n: Normalisation, key: 'mean' | 'std', channels: number): tf.Tensor1D {
  const v = n[key];
  if (v.length !== 1 && v.length !== channels) {
    throw new Error(
      `TeacherInput: ${key} has ${v.length} values [${v.join(', ')}] for ${channels} channels`,
    );
  }
  return tf.tensor1d(v.length === channels ? [...v] : Array<number>(channels).fill(v[0]!));
}

/** The student view `x` in the teacher's input format (see `TeacherInput`). */
export function adaptTeacherInput(x: tf.Tensor4D, input: TeacherInput): tf.Tensor4D {
  return tf.tidy(() => {
    const c = x.shape[3];
    const { to } = input;
    if (c !== to.channels && c !== 1) {
      throw new Error(
        `TeacherInput: views have ${c} channels, the teacher takes ${to.channels}; only a ` +
          `1-channel view can be repeated`,
      );
    }
    const fromMean = channelVector(input.from, 'mean', c);
    const fromStd = channelVector(input.from, 'std', c);
    let y: tf.Tensor4D = tf.add(tf.mul(x, fromStd), fromMean);
    if (c !== to.channels) y = tf.tile(y, [1, 1, 1, to.channels]);
    if (y.shape[1] !== to.size || y.shape[2] !== to.size) {
      y = tf.image.resizeBilinear(y, [to.size, to.size], false, true);
    }
    return tf.div(
      tf.sub(y, channelVector(to, 'mean', to.channels)),
      channelVector(to, 'std', to.channels),
    );
  });
}

/** A frozen encoder producing normalised targets. */
export class Teacher {
  /** The teacher's own frozen copy of the encoder given to the constructor. */
  readonly encoder: Encoder;

  /**
   * @param encoder the pre-trained encoder; its parameters are copied into frozen variables.
   * @param bnMode how its BatchNorm layers run; default `train`, as the official code.
   * @param bnGroupSize ghost-BN group size in `train` mode (32 as per-GPU BN); unset: one group.
   * @param input when given, views are converted to the teacher's input format first.
   * @throws when `bnMode` is neither `train` nor `eval`.
   */
  constructor(
    encoder: Encoder,
    readonly bnMode: TeacherBnMode = 'train',
    readonly bnGroupSize?: number,
    readonly input?: TeacherInput,
  ) {
    if (bnMode !== 'train' && bnMode !== 'eval') {
      throw new Error(`Teacher: bnMode must be 'train' or 'eval', got '${bnMode}'`);
    }
    this.encoder = bindEncoder(encoder.net, encoder.outDim, encoder.params.clone({ frozen: true }));
  }

  /** Normalised embeddings `[N, dim]` of images `[N, H, W, C]`, without gradients. */
  embed(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const input = this.input ? adaptTeacherInput(x, this.input) : x;
      const ctx = { training: this.bnMode === 'train', bnGroupSize: this.bnGroupSize };
      return l2Normalize(this.encoder.apply(input, ctx));
    });
  }

  /** Frees the frozen copy of the parameters (the encoder given is left as it was). */
  dispose(): void {
    this.encoder.params.dispose();
  }
}
