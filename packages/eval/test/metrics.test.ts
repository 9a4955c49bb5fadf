import { describe, expect, it } from 'vitest';
import { confusionMatrix, perClassAccuracy, top1Accuracy } from '@disco/eval';

describe('metrics', () => {
  const labels = [0, 0, 1, 1, 1, 2, 2, 0];
  const preds = [0, 1, 1, 1, 0, 2, 1, 0];

  it('counts top-1 hits as a fraction', () => {
    // Hits at rows 0, 2, 3, 5, 7: 5 of 8.
    expect(top1Accuracy(preds, labels)).toBe(0.625);
    expect(top1Accuracy(Int32Array.from(labels), labels)).toBe(1);
  });

  it('builds the confusion matrix with true classes as rows', () => {
    // true 0: predicted 0, 1, 0;  true 1: 1, 1, 0;  true 2: 2, 1.
    expect([...confusionMatrix(preds, labels, 3)]).toEqual([2, 1, 0, 1, 2, 0, 0, 1, 1]);
    // A class with no rows gives NaN, not 0.
    const acc = perClassAccuracy(preds, labels, 4);
    expect([...acc.slice(0, 3)]).toEqual([2 / 3, 2 / 3, 0.5]);
    expect(acc[3]).toBeNaN();
  });

  it('rejects mismatched lengths, empty input and out-of-range classes', () => {
    expect(() => top1Accuracy([0, 1], [0])).toThrow(
      /top1Accuracy: predictions \(2\) and labels \(1\) must have the same length/,
    );
    expect(() => top1Accuracy([], [])).toThrow(/top1Accuracy: needs at least one label, got 0/);
    expect(() => confusionMatrix([0, 3], [0, 1], 3)).toThrow(
      /confusionMatrix: predictions\[1\] must be an integer class in \[0, 3\), got 3/,
    );
    expect(() => confusionMatrix([0], [0, 1], 3)).toThrow(
      /confusionMatrix: predictions must have one label per row \(2\), got 1/,
    );
    expect(() => confusionMatrix([0], [0], 0)).toThrow(
      /confusionMatrix: numClasses must be an integer >= 1, got 0/,
    );
  });
});
