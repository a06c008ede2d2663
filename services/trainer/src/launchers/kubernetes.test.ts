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
