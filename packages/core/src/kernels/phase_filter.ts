/**
 * The phase decomposition of a strided conv's input gradient along one spatial axis, and
 * the sub-filters it needs. Derived for DisCo.js from the conv index algebra.
 *
 * Forward (one axis): y[i] = sum_a xpad[i*s + a] w[a], with xpad[r] = x[r - pad]. Output
 * row p = s*u + phi of dx (phase phi) is reached by the taps a = rho + s*m,
 * rho = (phi + pad) mod s, from dy row i = u + delta - m, delta = floor((phi + pad) / s).
 * With K = ceil((k - rho) / s) taps and m' = K-1-m this is a stride-1 correlation of dy,
 * padded by K-1-delta in front, with the flipped sub-filter w[rho + s*(K-1-m')].
 */
/** One phase of one axis: its flipped taps and the signed pads of its stride-1 conv. */
export interface AxisPhase {
  /** Forward tap index for each sub-filter tap, in conv (flipped) order; empty: no taps. */
  taps: number[];
  /** Pads of dy before and after (negative: crop the conv's output). */
  padBefore: number;
  padAfter: number;
}

/**
 * The `s` phases of one axis, each producing `ceil(size / s)` rows.
 * @param k forward filter size, @param s stride, @param pad forward front pad,
 * @param size forward input size, @param outSize forward output size (dy's)
 */
export function axisPhases(
  k: number,
  s: number,
  pad: number,
  size: number,
  outSize: number,
): AxisPhase[] {
  const rows = Math.ceil(size / s);
  return [...Array(s).keys()].map((phi) => {
    const rho = (phi + pad) % s;
    const count = rho < k ? Math.ceil((k - rho) / s) : 0;
    const delta = Math.floor((phi + pad) / s);
    const taps = [...Array(count).keys()].map((t) => rho + s * (count - 1 - t));
    return { taps, padBefore: count - 1 - delta, padAfter: rows + delta - outSize };
  });
}

/** Side of the square blocks in which `phaseFilter` transposes each tap's [Ci, Co] matrix. */
const BLOCK = 32;

/**
 * The sub-filter `[Kh, Kw, Co, Ci]` of one (row, column) phase for a forward filter
 * `[kh, kw, Ci, Co]`: the phase's taps, flipped, with in and out channels swapped, written
 * into `out` (length Kh*Kw*Co*Ci).
 */
export function phaseFilter(
  w: Float32Array,
  shape: [number, number, number, number],
  rows: AxisPhase,
  cols: AxisPhase,
  out: Float32Array,
): void {
  const [, kw, ci, co] = shape;
  const lw = cols.taps.length;
  for (let th = 0; th < rows.taps.length; th++) {
    for (let tw = 0; tw < lw; tw++) {
      const src = (rows.taps[th]! * kw + cols.taps[tw]!) * ci * co;
      const dst = (th * lw + tw) * co * ci;
      // out[dst + o*ci + c] = w[src + c*co + o], blocked so both sides stay in cache.
      for (let c0 = 0; c0 < ci; c0 += BLOCK) {
        const c1 = Math.min(c0 + BLOCK, ci);
        for (let o0 = 0; o0 < co; o0 += BLOCK) {
          const o1 = Math.min(o0 + BLOCK, co);
          for (let o = o0; o < o1; o++) {
            const d = dst + o * ci;
            for (let c = c0; c < c1; c++) out[d + c] = w[src + c * co + o]!;
          }
        }
      }
    }
  }
}
