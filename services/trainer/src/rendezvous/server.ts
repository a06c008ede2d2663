/**
 * The HTTP face of the rendezvous store, on its own listener: ranks present a
 * per-attempt token, not an API token, and never need the rest of the API.
 * Protocol: docs/trainer.md ("Rendezvous store protocol").
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isStoreError, MAX_VALUE_BYTES, MAX_WAIT_MS, StoreError, type RendezvousStore } from './store.ts';

const PATH_RE = /^\/v1\/rendezvous\/([^/]+)\/([0-9]{1,9})\/keys\/(.+)$/;

function problem(res: ServerResponse, status: number, slug: string, detail: string): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/problem+json' });
  res.end(JSON.stringify({ type: `urn:flywheel:problem:${slug}`, title: slug.replace(/-/g, ' '), status, detail }));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > MAX_VALUE_BYTES) throw new StoreError(413, 'payload-too-large', `bodies are limited to ${MAX_VALUE_BYTES} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

export interface StoreServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

export async function startStoreServer(store: RendezvousStore, opts: { host: string; port: number; log?: (msg: string, err: unknown) => void }): Promise<StoreServer> {
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://store');
    const m = PATH_RE.exec(url.pathname);
    if (!m) return problem(res, 404, 'route-not-found', 'no such store route');
    const runId = decodeURIComponent(m[1]!);
    const attempt = Number(m[2]);
    let key = m[3]!;
    const auth = req.headers.authorization;
    const token = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
    await store.authorize(runId, attempt, token);
    if (req.method === 'PUT') {
      await store.set(runId, attempt, key, await readBody(req));
      res.writeHead(204).end();
    } else if (req.method === 'GET') {
      const raw = url.searchParams.get('wait_ms') ?? '0';
      const waitMs = Number(raw);
      if (!/^[0-9]{1,9}$/.test(raw) || waitMs > MAX_WAIT_MS) throw new StoreError(400, 'bad-request', `wait_ms must be an integer 0..${MAX_WAIT_MS}`);
      const value = await store.get(runId, attempt, key, waitMs);
      if (value === undefined) return problem(res, 404, 'rendezvous-key-not-found', `key ${key} not set within ${waitMs} ms`);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': value.byteLength }).end(value);
    } else if (req.method === 'POST' && key.endsWith('/add')) {
      key = key.slice(0, -4);
      const text = (await readBody(req)).toString('utf8').trim();
      if (!/^-?[0-9]{1,18}$/.test(text)) throw new StoreError(400, 'bad-request', 'the add body must be a decimal integer');
      const value = await store.add(runId, attempt, key, BigInt(text));
      res.writeHead(200, { 'content-type': 'text/plain' }).end(String(value));
    } else {
      problem(res, 405, 'method-not-allowed', 'PUT, GET or POST .../add');
    }
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (isStoreError(e)) return problem(res, e.status, e.slug, e.message);
      opts.log?.('rendezvous store request failed', e);
      problem(res, 503, 'unavailable', 'the store is unavailable; retry');
    });
  });
  server.requestTimeout = MAX_WAIT_MS + 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
