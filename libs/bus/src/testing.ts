// Test kit for code that uses the bus (exported as `@flywheel/bus/testing`).
// Every test gets its own namespace (subjects, streams and KV buckets are
// prefixed with it), so suites run in parallel against one shared NATS
// without colliding; tests that kill the server start their own.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectBus } from './bus.ts';
import type { Bus, BusOptions } from './types.ts';

/** The shared server of the test environment (NATS_URL, default loopback). */
export function natsUrl(): string {
  return process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';
}

let counter = 0;

/** A namespace no other test run uses: `t<time><pid><n><random>`. */
export function uniqueNamespace(prefix = 't'): string {
  counter++;
  const rnd = Math.floor(Math.random() * 36 ** 4).toString(36);
  return `${prefix}${Date.now().toString(36)}${process.pid.toString(36)}${counter}${rnd}`;
}

export interface TestBus {
  bus: Bus;
  namespace: string;
  /** Close the bus and delete every stream and KV bucket of the namespace. */
  cleanup(): Promise<void>;
}

/** Connect a bus in a fresh namespace (streams provisioned). */
export async function createTestBus(opts: Partial<BusOptions> = {}): Promise<TestBus> {
  const namespace = opts.namespace ?? uniqueNamespace();
  const bus = await connectBus({ servers: natsUrl(), name: `test-${namespace}`, ...opts, namespace });
  return {
    bus,
    namespace,
    cleanup: async () => {
      await deleteNamespace(opts.servers ?? natsUrl(), namespace);
      await bus.close();
    },
  };
}

/** Delete the streams (events, DLQ, KV) of a namespace through a fresh connection. */
export async function deleteNamespace(servers: string | string[], namespace: string): Promise<void> {
  const admin = await connectBus({ servers, namespace, provision: false, maxReconnectAttempts: 0 });
  try {
    const upper = `${namespace.toUpperCase()}_`;
    const kv = `KV_${namespace}_`;
    for await (const name of admin.jsm.streams.names()) {
      if (name.startsWith(upper) || name.startsWith(kv)) await admin.jsm.streams.delete(name);
    }
  } finally {
    await admin.close();
  }
}

/** A spare TCP port on loopback. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = tcpConnect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nats-server did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A nats-server owned by the test, with JetStream on a private store. */
export interface OwnedNatsServer {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** Kill the process (default SIGKILL, i.e. `kill -9`) and wait for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Start again on the same port and store (after kill). */
  restart(): Promise<void>;
  /** Stop the server and delete its store. */
  stop(): Promise<void>;
}

const NATS_SERVER = process.env['FW_NATS_SERVER'] ?? '/usr/sbin/nats-server';

/** Start `nats-server -js -p <spare port> -sd <temp dir>` and wait until it listens. */
export async function startNatsServer(): Promise<OwnedNatsServer> {
  const port = await freePort();
  const storeDir = mkdtempSync(join(tmpdir(), 'fw-nats-'));
  let proc: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    const p = spawn(NATS_SERVER, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    p.stderr?.on('data', (d: Buffer) => {
      log = (log + d.toString()).slice(-4000);
    });
    proc = p;
    try {
      await waitForPort(port, 10_000);
    } catch (e) {
      p.kill('SIGKILL');
      throw new Error(`${(e as Error).message}\n${log}`, { cause: e });
    }
  };

  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill(signal);
    await exited;
  };

  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    kill,
    restart: async () => {
      await kill();
      await start();
    },
    stop: async () => {
      await kill('SIGTERM');
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}
