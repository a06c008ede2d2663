// Throughput and peak RSS of the file backend for a 1 GiB streamed object
// (put with fsync, get, putContentAddressed). Run: node libs/artifacts/bench/file-store.bench.ts
import { Readable } from 'node:stream';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileStore } from '../src/index.ts';
const root = await mkdtemp(join(tmpdir(), 'fw-bench-'));
const store = createFileStore({ root });
const MiB = 1 << 20, total = 1024;
const chunk = Buffer.alloc(MiB, 7);
async function* gen() { for (let i = 0; i < total; i++) yield chunk; }
let peak = 0; const t = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
const t0 = performance.now();
const r = await store.put('bench/big.bin', Readable.from(gen()));
const t1 = performance.now();
let n = 0; for await (const c of await store.get(r.uri)) n += (c as Buffer).length;
const t2 = performance.now();
const cas = await store.putContentAddressed(Readable.from(gen()));
const t3 = performance.now();
clearInterval(t);
console.log(JSON.stringify({ sizeMiB: r.size / MiB, putMiBps: +(total / ((t1 - t0) / 1000)).toFixed(0), getMiBps: +(n / MiB / ((t2 - t1) / 1000)).toFixed(0), casPutMiBps: +(total / ((t3 - t2) / 1000)).toFixed(0), created: cas.created, peakRssMiB: +(peak / MiB).toFixed(0) }));
await rm(root, { recursive: true, force: true });
