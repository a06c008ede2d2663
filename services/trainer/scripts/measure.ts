// Measures restart latency (SIGKILL of a rank -> first step of the next attempt) and
// rendezvous store latencies on this machine, against the real NATS, Postgres and fw_worker.
// Run: cd services/trainer && node scripts/measure.ts
import { startHarness, tinyDataset, tinyRun } from '../test/harness.ts';
const h = await startHarness({ maxRanks: 2 });
const manifestUri = await tinyDataset(h.artifacts);
// 1. restart latency
const lat: number[] = [];
for (let i = 0; i < 5; i++) {
  const res = await h.app.inject({ method: 'POST', url: '/v1/runs', headers: h.auth, payload: tinyRun(manifestUri, { hyperparameters: { maxSteps: 200, learningRate: 1e-3, batchSize: 4, seqLen: 32 } }) });
  const id = res.json<{ id: string }>().id;
  let killedAt = 0; let firstAfter = 0;
  await new Promise<void>((resolve) => {
    const off = h.hub.subscribe(id, { metric: (m) => {
      if (m.attempt === 0 && m.step >= 30 && !killedAt) { killedAt = -1; void h.runs.ranks(id, 0).then((r) => { killedAt = performance.now(); process.kill(r[0]!.pid!, 'SIGKILL'); }); }
      if (m.attempt === 1 && !firstAfter) { firstAfter = performance.now(); off(); resolve(); }
    }, status: () => undefined });
  });
  lat.push(firstAfter - killedAt);
  await h.waitRun(id, (r) => r.status === 'completed');
}
console.log('kill -> first step of the next attempt (ms):', lat.map((x) => x.toFixed(0)).join(' '));
// 2. store
const token = await h.store.open('m', 0);
const base = `http://127.0.0.1:${h.storeServer.port}/v1/rendezvous/m/0`;
const auth = { authorization: `Bearer ${token}` };
let t = performance.now();
for (let i = 0; i < 500; i++) await fetch(`${base}/keys/c/add`, { method: 'POST', body: '1', headers: auth }).then((r) => r.text());
console.log('sequential add (ms/op):', ((performance.now() - t) / 500).toFixed(2));
t = performance.now();
await Promise.all(Array.from({ length: 200 }, () => fetch(`${base}/keys/d/add`, { method: 'POST', body: '1', headers: auth }).then((r) => r.text())));
console.log('200 concurrent adds (ms total):', (performance.now() - t).toFixed(0));
const wake: number[] = [];
for (let i = 0; i < 20; i++) {
  const p = fetch(`${base}/keys/w${i}?wait_ms=5000`, { headers: auth }).then(() => performance.now());
  await new Promise((r) => setTimeout(r, 50));
  const s = performance.now();
  await fetch(`${base}/keys/w${i}`, { method: 'PUT', body: 'x', headers: auth });
  wake.push((await p) - s);
}
wake.sort((a, b) => a - b);
console.log('long-poll wake-up after PUT (ms) median/max:', wake[10]!.toFixed(1), wake[19]!.toFixed(1));
await h.close();
process.exit(0);
