import { Job } from 'kubernetes-models/batch/v1/Job';
import { Secret } from 'kubernetes-models/v1/Secret';
import { describe, expect, it } from 'vitest';
import { buildManifests, jobName } from './kubernetes.ts';

const req = {
  runId: '3f2c8a10-1b2c-4d5e-8f90-0123456789ab',
  attempt: 2,
  worldSize: 4,
  workerBin: '/opt/flywheel/fw_worker',
  specPath: '/var/lib/fw/work/3f2c/job.json',
  workDir: '/var/lib/fw/work/3f2c',
  env: { FW_STORE_URL: 'http://trainer.flywheel.svc:8092/v1/rendezvous/3f2c/2', FW_STORE_TOKEN: 'secret-token-value' },
  threadsPerRank: 2,
  device: 'cpu' as const,
};
const opts = { namespace: 'ml', image: 'ghcr.io/flywheel/worker:1', workVolumeClaim: 'fw-work', workRoot: '/var/lib/fw/work', maxNodes: 8 };

describe('kubernetes launcher', () => {
  it('kubernetes - the Indexed Job and its Secret validate against the Kubernetes schemas', () => {
    const { job, secret } = buildManifests(req, opts);
    expect(() => new Job(job as never).validate()).not.toThrow();
    expect(() => new Secret(secret as never).validate()).not.toThrow();
  });

  it('kubernetes - one pod per node: completions = parallelism = world size, indexed, no pod retries', () => {
    const { job } = buildManifests(req, opts);
    expect(job.spec).toMatchObject({ completionMode: 'Indexed', completions: 4, parallelism: 4, backoffLimit: 0 });
    const pod = job.spec!.template.spec!;
    expect(pod.restartPolicy).toBe('Never');
    expect(pod.affinity!.podAntiAffinity!.requiredDuringSchedulingIgnoredDuringExecution![0]!.topologyKey).toBe('kubernetes.io/hostname');
    const env = Object.fromEntries(pod.containers[0]!.env!.map((e) => [e.name, e]));
    expect(env['RANK']!.valueFrom!.fieldRef!.fieldPath).toContain('job-completion-index');
    expect(env['WORLD_SIZE']!.value).toBe('4');
    expect(env['FW_STORE_URL']!.value).toBe(req.env.FW_STORE_URL);
    // The token never appears in the Job, only as a reference to the Secret.
    expect(JSON.stringify(job)).not.toContain('secret-token-value');
    expect(env['FW_STORE_TOKEN']!.valueFrom!.secretKeyRef!.name).toBe(job.metadata!.name);
  });

  it('kubernetes - each pod of a cuda run requests and limits one nvidia.com/gpu (LOCAL_RANK 0); a cpu run asks for none', () => {
    const container = (device: 'cpu' | 'cuda') => buildManifests({ ...req, device }, opts).job.spec!.template.spec!.containers[0]!;
    const cuda = container('cuda');
    expect(cuda.resources!.requests).toMatchObject({ 'nvidia.com/gpu': '1' });
    expect(cuda.resources!.limits).toMatchObject({ 'nvidia.com/gpu': '1' });
    expect(cuda.env!.find((e) => e.name === 'LOCAL_RANK')!.value).toBe('0');
    expect(() => new Job(buildManifests({ ...req, device: 'cuda' }, opts).job as never).validate()).not.toThrow();
    const cpu = container('cpu');
    expect(JSON.stringify(cpu.resources)).not.toContain('nvidia.com/gpu');
  });

  it('kubernetes - a malformed manifest is caught by the same validation', () => {
    const { job } = buildManifests(req, opts);
    const broken = structuredClone(job) as { spec: { completions: unknown } };
    broken.spec.completions = 'four';
    expect(() => new Job(broken as never).validate()).toThrow();
  });

  it('kubernetes - job names are DNS-1123 labels', () => {
    const n = jobName('ABC_def.ghi-0123456789-0123456789-0123456789-0123456789', 12);
    expect(n).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(n.length).toBeLessThanOrEqual(63);
  });
});

/**
 * The launcher's API calls through the real @kubernetes/client-node, against
 * a local HTTP listener that answers like the API server for the few paths
 * used (no cluster runs on this machine).
 */
describe('kubernetes launcher API calls', () => {
  it('kubernetes - creates the Secret and the Job, follows each pod log and exit, and deletes both when stopped', async () => {
    const { createServer } = await import('node:http');
    const k8s = await import('@kubernetes/client-node');
    const { createKubernetesLauncher } = await import('./kubernetes.ts');
    const calls: { method: string; url: string; body: unknown }[] = [];
    let succeeded = 0;
    const server = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        calls.push({ method: req.method!, url: req.url!, body: raw ? JSON.parse(raw) : undefined });
        res.setHeader('content-type', 'application/json');
        const path = req.url!.split('?')[0]!;
        if (req.method === 'GET' && path === '/api/v1/namespaces/ml/pods') {
          const items = Array.from({ length: 4 }, (_, i) => ({
            metadata: { name: `pod-${i}`, annotations: { 'batch.kubernetes.io/job-completion-index': String(i) } },
            status: {
              phase: succeeded ? 'Succeeded' : 'Running',
              containerStatuses: succeeded ? [{ name: 'worker', state: { terminated: { exitCode: 0 } } }] : [{ name: 'worker', state: { running: {} } }],
            },
          }));
          res.end(JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: {}, items }));
        } else if (req.method === 'GET' && /^\/api\/v1\/namespaces\/ml\/pods\/pod-\d\/log$/.test(path)) {
          res.setHeader('content-type', 'text/plain');
          res.end(`{"event":"step","step":1,"loss":4.5,"pod":"${path.split('/')[6]}"}\n`);
        } else if (req.method === 'GET' && /\/jobs\/[^/]+\/status$/.test(req.url!)) {
          res.end(JSON.stringify({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'x' }, status: { succeeded } }));
        } else if (req.method === 'POST' || req.method === 'DELETE') {
          res.end(raw || JSON.stringify({ apiVersion: 'v1', kind: 'Status', status: 'Success' }));
        } else {
          res.statusCode = 404;
          res.end(JSON.stringify({ kind: 'Status', code: 404 }));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: 'u', token: 'api-token' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    try {
      const launcher = createKubernetesLauncher({ ...opts, pollMs: 50 }, kc);
      expect(launcher.maxWorldSize()).toBe(8);
      const a = await launcher.launch(req);
      const name = jobName(req.runId, req.attempt);
      expect(calls.map((c) => `${c.method} ${c.url.split('?')[0]}`).slice(0, 2)).toEqual([
        'POST /api/v1/namespaces/ml/secrets',
        'POST /apis/batch/v1/namespaces/ml/jobs',
      ]);
      expect(calls[1]!.body).toMatchObject({ kind: 'Job', metadata: { name }, spec: { completionMode: 'Indexed', completions: 4 } });
      expect(() => new Job(calls[1]!.body as never).validate()).not.toThrow();
      // Every rank's stdout comes from its pod's log.
      const lines = await Promise.all(a.ranks.map((r) => new Promise<string>((res) => r.onLine(res))));
      expect(lines.map((l) => (JSON.parse(l) as { pod: string }).pod)).toEqual(['pod-0', 'pod-1', 'pod-2', 'pod-3']);
      succeeded = 4;
      const exits = await Promise.all(a.ranks.map((r) => r.exited));
      expect(exits.every((e) => e.code === 0)).toBe(true);
      expect(calls.some((c) => c.url.startsWith('/api/v1/namespaces/ml/pods?') && c.url.includes('labelSelector=job-name'))).toBe(true);

      // A second attempt, stopped by the trainer: Job and Secret are deleted.
      succeeded = 0;
      const b = await launcher.launch({ ...req, attempt: 3 });
      b.signal('SIGTERM');
      const stopped = await b.ranks[0]!.exited;
      expect(stopped.signal).toBe('SIGTERM');
      const deletes = calls.filter((c) => c.method === 'DELETE').map((c) => c.url.split('?')[0]);
      expect(deletes).toEqual([`/apis/batch/v1/namespaces/ml/jobs/${jobName(req.runId, 3)}`, `/api/v1/namespaces/ml/secrets/${jobName(req.runId, 3)}`]);
    } finally {
      server.close();
    }
  });
});
