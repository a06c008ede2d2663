/**
 * With OTEL_EXPORTER_OTLP_ENDPOINT set, spans and metrics leave over
 * OTLP/HTTP. A local HTTP listener stands in for the collector and records
 * what arrives; shutdown() must flush both signals to it.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTelemetry } from './index.ts';

describe('telemetry otlp', () => {
  let server: Server;
  let endpoint = '';
  const received: { path: string; type: string; body: Buffer }[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ path: req.url ?? '', type: req.headers['content-type'] ?? '', body: Buffer.concat(chunks) });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('telemetry otlp - spans and metrics are exported to the configured endpoint on shutdown', async () => {
    const tel = startTelemetry({ serviceName: 'otlp-test-svc', env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint } });
    expect(tel.exporting).toBe(true);
    tel.tracer.startActiveSpan('exported-span', (span) => span.end());
    tel.meter.createCounter('fw_otlp_test_total').add(3);
    await tel.shutdown();
    const paths = received.map((r) => r.path).sort();
    expect(paths).toEqual(['/v1/metrics', '/v1/traces']);
    const traces = received.find((r) => r.path === '/v1/traces');
    // OTLP/HTTP with the JSON encoding (what @opentelemetry/exporter-*-otlp-http sends).
    expect(traces?.type).toBe('application/json');
    const doc = JSON.parse(traces?.body.toString() ?? '{}') as {
      resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: { name: string }[] }[] }[];
    };
    const rs = doc.resourceSpans[0];
    expect(rs?.resource.attributes).toContainEqual({ key: 'service.name', value: { stringValue: 'otlp-test-svc' } });
    expect(rs?.scopeSpans[0]?.spans.map((x) => x.name)).toEqual(['exported-span']);
    expect(traces?.body.includes('exported-span')).toBe(true);
    expect(traces?.body.includes('otlp-test-svc')).toBe(true);
    expect(received.find((r) => r.path === '/v1/metrics')?.body.includes('fw_otlp_test_total')).toBe(true);
  });
});
