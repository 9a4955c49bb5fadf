/**
 * The phase decomposition of a strided conv's input gradient, along one spatial axis, and
 * the combined filter that runs every phase in one stride-1 conv. Derived for DisCo.js.
 *
 * Forward (one axis): y[i] = sum_a xpad[i*s + a] w[a], with xpad[r] = x[r - pad]. Output
 * row p of dx, phase phi = p mod s, p = s*u + phi, is reached by the taps
 * a = rho + s*m, rho = (phi + pad) mod s, from dy row i = u + delta - m with
 * delta = floor((phi + pad) / s). With K = ceil((k - rho) / s) taps and m' = K-1-m this is
 * a stride-1 correlation of dy, padded by K-1-delta before, with the flipped sub-filter.
 * Phases get a common front pad T (the largest K-1-delta) by shifting each sub-filter right
 * by T - (K-1-delta) taps inside a common length L.
 */
import { tf } from '../tf.js';

/** How the s phases of one axis map onto a shared stride-1 conv. */
export interface PhasePlan {
  stride: number;
  /** Common filter length L of the combined conv along this axis. */
  length: number;
  /** For phase phi and combined tap t, the forward tap index a (or -1 for a zero tap). */
  taps: Int32Array[];
  /** Signed pads of dy before and after along this axis (negative: crop the output). */
  padBefore: number;
  padAfter: number;
  /** Rows per phase in the combined conv's output: ceil(size / stride). */
  perPhase: number;
}

/**
 * Plans one axis.
 * @param k forward filter size, @param s stride, @param pad forward front pad,
 * @param size forward input size, @param outSize forward output size (dy's)
 */
export function phasePlan(
  k: number,
  s: number,
  pad: number,
  size: number,
  outSize: number,
): PhasePlan {
  const phases = [...Array(s).keys()].map((phi) => {
    const rho = (phi + pad) % s;
    const count = rho < k ? Math.ceil((k - rho) / s) : 0;
    const delta = Math.floor((phi + pad) / s);
    return { rho, count, front: count - 1 - delta };
  });
  const front = Math.max(...phases.filter((p) => p.count > 0).map((p) => p.front));
  const length = Math.max(...phases.map((p) => front - p.front + p.count));
  const taps = phases.map(({ rho, count, front: own }) => {
    const t = new Int32Array(length).fill(-1);
    const shift = front - own;
    for (let mFlipped = 0; mFlipped < count; mFlipped++) {
      t[shift + mFlipped] = rho + s * (count - 1 - mFlipped);
    }
    return t;
  });
  const perPhase = Math.ceil(size / s);
  const padAfter = perPhase - 1 + length - 1 - front - (outSize - 1);
  return { stride: s, length, taps, padBefore: front, padAfter, perPhase };
}

/**
 * The combined filter `[Lh, Lw, Co, sh*sw*Ci]` for a forward filter `[kh, kw, Ci, Co]`:
 * output channel `(phiH*sw + phiW)*Ci + c` holds phase (phiH, phiW) for input channel c,
 * the order `depthToSpace` reads.
 */
export function phaseFilter(
  w: Float32Array,
  shape: [number, number, number, number],
  rows: PhasePlan,
  cols: PhasePlan,
): tf.Tensor4D {
  const [, kw, ci, co] = shape;
  const sh = rows.stride;
  const sw = cols.stride;
  const lh = rows.length;
  const lw = cols.length;
  const outCh = sh * sw * ci;
  const g = new Float32Array(lh * lw * co * outCh);
  for (let ph = 0; ph < sh; ph++) {
    for (let pw = 0; pw < sw; pw++) {
      const chBase = (ph * sw + pw) * ci;
      for (let th = 0; th < lh; th++) {
        const a = rows.taps[ph]![th]!;
        if (a < 0) continue;
        for (let tw = 0; tw < lw; tw++) {
          const b = cols.taps[pw]![tw]!;
          if (b < 0) continue;
          const src = (a * kw + b) * ci * co;
          const dst = (th * lw + tw) * co * outCh + chBase;
          for (let c = 0; c < ci; c++) {
            const s = src + c * co;
            const d = dst + c;
            for (let o = 0; o < co; o++) g[d + o * outCh] = w[s + o]!;
          }
        }
      }
    }
  }
  return tf.tensor4d(g, [lh, lw, co, outCh], 'float32');
}
