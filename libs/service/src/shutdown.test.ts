import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp, handleShutdownSignals } from './index.ts';
import type { App } from './index.ts';

const TOKEN = 'test-token-0123456789abcdef';
const headers = { authorization: `Bearer ${TOKEN}` };

async function listening(setup: (app: App) => void, order: string[]): Promise<{ app: App; url: string }> {
  const app = await createApp({ name: 'shutdown-test', version: '1', auth: { tokens: [TOKEN] }, shutdownTimeoutMs: 2000 });
  app.get('/v1/slow', async () => {
    await new Promise((r) => setTimeout(r, 300));
    order.push('request');
    return { done: true };
  });
  setup(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
}

describe('shutdown', () => {
  let app: App | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('shutdown - finishes in-flight requests and drainers before closing resources', async () => {
    const order: string[] = [];
    const l = await listening((a) => {
      a.addDrainer('consumer', async () => {
        await new Promise((r) => setTimeout(r, 100));
        order.push('drainer');
      });
      a.addDrainer('second', async () => {
        order.push('second drainer');
      });
      a.addHook('onClose', async () => {
        order.push('onClose');
      });
      a.addResource('postgres', async () => {
        order.push('postgres');
      });
      a.addResource('bus', async () => {
        order.push('bus');
      });
    }, order);
    app = l.app;
    const inflight = fetch(`${l.url}/v1/slow`, { headers });
    await new Promise((r) => setTimeout(r, 50));
    const closing = app.closeGracefully();
    expect(app.draining).toBe(true);
    const res = await inflight;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ done: true });
    const report = await closing;
    expect(report).toMatchObject({ failedDrainers: [], failedResources: [], timedOut: false });
    expect(order).toEqual(['drainer', 'second drainer', 'request', 'onClose', 'bus', 'postgres']);
    await expect(fetch(`${l.url}/healthz`)).rejects.toThrow();
    expect(app.closeGracefully()).toBe(closing);
  });

  it('shutdown - readyz answers 503 while draining', async () => {
    app = await createApp({ name: 'd', version: '1', auth: { tokens: [TOKEN] } });
    let release!: () => void;
    app.addDrainer('slow', () => new Promise<void>((r) => (release = r)));
    const closing = app.closeGracefully();
    const res = await app.inject({ url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ type: 'urn:flywheel:problem:not-ready', detail: 'shutting down' });
    release();
    await closing;
  });

  it('shutdown - a drainer that hangs or throws is reported and does not block the close', async () => {
    app = await createApp({ name: 'd', version: '1', auth: { tokens: [TOKEN] } });
    app.addDrainer('hangs', () => new Promise(() => undefined));
    app.addDrainer('throws', async () => {
      throw new Error('nope');
    });
    app.addDrainer('fine', async () => undefined);
    let closed = false;
    app.addResource('pool', async () => {
      closed = true;
    });
    app.addResource('broken', async () => {
      throw new Error('close failed');
    });
    const t0 = Date.now();
    const report = await app.closeGracefully({ timeoutMs: 200 });
    expect(report.failedDrainers).toEqual(['hangs', 'throws']);
    expect(report.failedResources).toEqual(['broken']);
    expect(closed).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('shutdown - SIGTERM starts a graceful close', async () => {
    app = await createApp({ name: 'sig', version: '1', auth: { tokens: [TOKEN] } });
    let drained = false;
    app.addDrainer('consumer', async () => {
      drained = true;
    });
    const closed = new Promise<void>((r) => app?.addHook('onClose', async () => r()));
    const uninstall = handleShutdownSignals(app, { exit: false });
    try {
      process.emit('SIGTERM', 'SIGTERM');
      await closed;
      expect(drained).toBe(true);
      expect(app.draining).toBe(true);
    } finally {
      uninstall();
    }
  });

  it('shutdown - a request arriving on an open connection while closing gets a 503 problem', async () => {
    const l = await listening(() => undefined, []);
    app = l.app;
    const port = (app.server.address() as AddressInfo).port;
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.on('data', (d: Buffer) => (data += d.toString()));
    const ended = new Promise((r) => socket.on('close', r));
    const req = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`;
    socket.write(req('/v1/slow'));
    await new Promise((r) => setTimeout(r, 50));
    const closing = app.closeGracefully();
    await new Promise((r) => setTimeout(r, 20));
    // Pipelined behind the in-flight request on the same connection.
    socket.write(req('/v1/slow'));
    await closing;
    await ended;
    const statuses = [...data.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]);
    expect(statuses).toEqual(['200', '503']);
    expect(data).toContain('application/problem+json');
    expect(data).toContain('urn:flywheel:problem:unavailable');
  });
});
