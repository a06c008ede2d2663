import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../test/harness.ts';

let h: Harness;
let base: string;
let token: string;
const run = 'rdv-run-1';

beforeAll(async () => {
  h = await startHarness();
  token = await h.store.open(run, 0);
  base = `http://127.0.0.1:${h.storeServer.port}/v1/rendezvous/${run}/0`;
});
afterAll(() => h?.close());

const req = (path: string, init: RequestInit = {}, tok = token) =>
  fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${tok}`, ...(init.headers ?? {}) } });

describe('rendezvous', () => {
  it('rendezvous - PUT then GET returns the raw bytes', async () => {
    const value = Buffer.from([0, 1, 2, 255, 10]);
    expect((await req('/keys/rank0/addr', { method: 'PUT', body: value })).status).toBe(204);
    const res = await req('/keys/rank0/addr');
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer())).toEqual(value);
  });

  it('rendezvous - GET with wait_ms answers as soon as another client sets the key', async () => {
    const t0 = Date.now();
    const pending = req('/keys/late?wait_ms=5000');
    setTimeout(() => void req('/keys/late', { method: 'PUT', body: 'here' }), 300);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('here');
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('rendezvous - GET of a missing key is a 404 problem after wait_ms', async () => {
    const t0 = Date.now();
    const res = await req('/keys/never?wait_ms=300');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(((await res.json()) as { type: string }).type).toBe('urn:flywheel:problem:rendezvous-key-not-found');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });

  it('rendezvous - 64 concurrent adds lose no increment', async () => {
    const results = await Promise.all(Array.from({ length: 64 }, () => req('/keys/join/add', { method: 'POST', body: '1' }).then((r) => r.text())));
    expect(new Set(results).size).toBe(64);
    expect((await req('/keys/join')).status).toBe(200);
    expect(await (await req('/keys/join')).text()).toBe('64');
    expect(await (await req('/keys/join/add', { method: 'POST', body: '-4' })).text()).toBe('60');
  });

  it('rendezvous - refuses bad keys, bad bodies, bad tokens, and answers 410 once the attempt is closed', async () => {
    expect((await req('/keys/bad key', { method: 'PUT', body: 'x' })).status).toBe(400);
    expect((await req(`/keys/${'a'.repeat(201)}`, { method: 'PUT', body: 'x' })).status).toBe(400);
    expect((await req('/keys/n/add', { method: 'POST', body: 'one' })).status).toBe(400);
    expect((await req('/keys/k?wait_ms=-1')).status).toBe(400);
    expect((await req('/keys/k', {}, 'wrong-token')).status).toBe(401);
    expect((await fetch(`${base}/keys/k`)).status).toBe(401);
    await h.store.close(run, 0);
    expect((await req('/keys/rank0/addr')).status).toBe(410);
    const other = await h.store.open(run, 1);
    const res = await fetch(`http://127.0.0.1:${h.storeServer.port}/v1/rendezvous/${run}/1/keys/rank0/addr`, { headers: { authorization: `Bearer ${other}` } });
    expect(res.status).toBe(404); // a new attempt starts empty
  });
});
