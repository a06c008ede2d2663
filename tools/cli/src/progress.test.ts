import { describe, expect, it } from 'vitest';
import { createEta, formatDuration, renderProgress } from './progress.ts';

describe('progress', () => {
  it('progress - renders bar, steps, loss, rate, ETA and restarts', () => {
    const line = renderProgress({ step: 50, maxSteps: 200, loss: 3.21456, tokensPerSecond: 12_345, attempt: 1, restarts: 1 }, 75, 20);
    expect(line).toBe('[#####---------------]  50/200  25%  loss 3.2146  12.3k tok/s  ETA 01:15  (restarts 1)');
  });

  it('progress - ETA from the recent step rate; unknown before two points', () => {
    const eta = createEta();
    expect(formatDuration(eta.secondsLeft(100))).toBe('--:--');
    eta.add(10, 0);
    eta.add(20, 2000);
    expect(eta.secondsLeft(100)).toBe(16);
    expect(formatDuration(3725)).toBe('1:02:05');
  });
});
