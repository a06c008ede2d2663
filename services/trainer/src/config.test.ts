import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.ts';

const base = { FW_API_TOKENS: 'a-token-of-sixteen-chars' };

describe('config', () => {
  it('config - defaults fit the machine: ranks x threads <= cores', () => {
    const c = loadConfig({ ...base, FW_THREADS_PER_RANK: '2' });
    expect(c.maxRanks).toBe(Math.max(1, Math.floor(availableParallelism() / 2)));
    expect(loadConfig(base)).toMatchObject({ launcher: 'local', port: 8082, storePort: 8092, dbSchema: 'trainer', threadsPerRank: 1, gpus: 0 });
    expect(loadConfig({ ...base, FW_GPUS: '8' }).gpus).toBe(8);
  });

  it('config - a bad value names the variable', () => {
    const bad: [Record<string, string>, RegExp][] = [
      [{}, /FW_API_TOKENS/],
      [{ ...base, FW_MAX_RANKS: '0' }, /FW_MAX_RANKS must be an integer >= 1/],
      [{ ...base, FW_LAUNCHER: 'slurm' }, /FW_LAUNCHER/],
      [{ ...base, FW_GPUS: '-1' }, /FW_GPUS must be an integer >= 0/],
      [{ ...base, FW_GPUS: 'all' }, /FW_GPUS must be an integer >= 0/],
      [{ ...base, NATS_URL: 'http://x' }, /NATS_URL must use nats/],
      [{ ...base, FW_TRAINER_DB_SCHEMA: 'Bad-Schema' }, /FW_TRAINER_DB_SCHEMA/],
      [{ ...base, FW_ARTIFACT_ROOT: '/plain/path' }, /FW_ARTIFACT_ROOT/],
    ];
    for (const [env, re] of bad) {
      expect(() => loadConfig(env)).toThrow(ConfigError);
      expect(() => loadConfig(env)).toThrow(re);
    }
  });
});
