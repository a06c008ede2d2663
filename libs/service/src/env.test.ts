import { describe, expect, it } from 'vitest';
import { ConfigError, envInt, envUrl, loadPlatformConfig } from './env.ts';

const token = 'a'.repeat(24);

describe('env', () => {
  it('env - readers take defaults and name the variable of a bad value', () => {
    expect(envInt({}, 'PORT', 8081, 0)).toBe(8081);
    expect(envInt({ PORT: '9000' }, 'PORT', 8081, 0)).toBe(9000);
    expect(() => envInt({ PORT: '-1' }, 'PORT', 8081, 0)).toThrow(/PORT must be an integer >= 0/);
    expect(() => envInt({ PORT: '1.5' }, 'PORT', 8081, 0)).toThrow(ConfigError);
    expect(envUrl({}, 'NATS_URL', 'nats://127.0.0.1:4222', ['nats'])).toBe('nats://127.0.0.1:4222');
    expect(() => envUrl({ NATS_URL: 'http://x' }, 'NATS_URL', 'nats://a', ['nats', 'tls'])).toThrow(/NATS_URL must use nats or tls/);
    expect(() => envUrl({ NATS_URL: 'not a url' }, 'NATS_URL', 'nats://a', ['nats'])).toThrow(/NATS_URL must be a URL/);
  });

  it('env - the shared settings get loopback defaults and refuse what would break a service later', () => {
    const c = loadPlatformConfig({ FW_API_TOKENS: `${token}, ${token}b` }, 'FW_X_DB_SCHEMA', 'x');
    expect(c).toMatchObject({
      natsUrl: 'nats://127.0.0.1:4222',
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/postgres',
      dbSchema: 'x',
      apiTokens: [token, `${token}b`],
      busNamespace: undefined,
      logLevel: 'info',
    });
    expect(c.artifactRoot).toMatch(/^file:\/\/.*\/\.fw-data\/artifacts\/$/);
    expect(() => loadPlatformConfig({}, 'S', 'x')).toThrow(/FW_API_TOKENS must hold at least one/);
    expect(() => loadPlatformConfig({ FW_API_TOKENS: 'short' }, 'S', 'x')).toThrow(/at least 16 characters/);
    expect(() => loadPlatformConfig({ FW_API_TOKENS: token, FW_ARTIFACT_ROOT: 'ftp://x' }, 'S', 'x')).toThrow(/FW_ARTIFACT_ROOT/);
    expect(() => loadPlatformConfig({ FW_API_TOKENS: token, FW_BUS_NAMESPACE: 'a.b' }, 'S', 'x')).toThrow(/FW_BUS_NAMESPACE/);
    expect(() => loadPlatformConfig({ FW_API_TOKENS: token, S: 'Bad-Schema' }, 'S', 'x')).toThrow(/S must be a lower-case SQL identifier/);
  });
});
