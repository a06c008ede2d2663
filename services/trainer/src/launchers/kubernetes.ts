/**
 * The Kubernetes launcher: one Indexed Job per attempt, one pod per node
 * (completions = parallelism = nodes), created through the Kubernetes API.
 * The pod's completion index is its node rank; with one process per pod it is
 * also RANK. The attempt's store token travels in a Secret owned by nothing
 * but deleted with the Job. The run work folder is a shared volume (PVC)
 * mounted at the same path as on the trainer, so the job spec paths hold.
 * Each rank's stdout (the worker's JSON lines) is followed through the pod
 * log API and its exit read from the pod's container status. A cuda run's
 * pods each request one `nvidia.com/gpu`.
 */
import { PassThrough } from 'node:stream';
import { createInterface } from 'node:readline';
import * as k8s from '@kubernetes/client-node';
import { LaunchError, type LaunchedAttempt, type Launcher, type LaunchRequest, type RankExit, type RankHandle } from './types.ts';

export interface KubernetesLauncherOptions {
  namespace: string;
  image: string;
  /** PVC holding the trainer's work root, mounted at `workRoot` in every pod. */
  workVolumeClaim: string;
  workRoot: string;
  maxNodes: number;
  cpuPerPod?: string;
  memoryPerPod?: string;
  pollMs?: number;
}

/** DNS-1123 name of an attempt's objects. */
export function jobName(runId: string, attempt: number): string {
  return `fw-run-${runId.toLowerCase().replace(/[^a-z0-9-]/g, '').slice(0, 36)}-a${attempt}`.replace(/-+$/, '');
}

/** The Secret and the Indexed Job of one attempt (plain objects, as sent to the API). */
export function buildManifests(req: LaunchRequest, o: KubernetesLauncherOptions): { secret: k8s.V1Secret; job: k8s.V1Job } {
  const name = jobName(req.runId, req.attempt);
  const labels = { 'app.kubernetes.io/name': 'flywheel-worker', 'flywheel.dev/run': name.slice(7, 43), 'flywheel.dev/attempt': String(req.attempt) };
  const { FW_STORE_TOKEN: token, ...plainEnv } = req.env;
  const secret: k8s.V1Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: o.namespace, labels },
    type: 'Opaque',
    stringData: { FW_STORE_TOKEN: token ?? '' },
  };
  const env: k8s.V1EnvVar[] = [
    { name: 'RANK', valueFrom: { fieldRef: { fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']" } } },
    { name: 'GROUP_RANK', valueFrom: { fieldRef: { fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']" } } },
    { name: 'WORLD_SIZE', value: String(req.worldSize) },
    // The collective's TCP device listens on the pod's own address.
    { name: 'FW_BIND_ADDR', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    { name: 'LOCAL_RANK', value: '0' },
    { name: 'LOCAL_WORLD_SIZE', value: '1' },
    { name: 'OMP_NUM_THREADS', value: String(req.threadsPerRank) },
    { name: 'OPENBLAS_NUM_THREADS', value: '1' },
    ...Object.entries(plainEnv).map(([k, v]) => ({ name: k, value: v })),
    { name: 'FW_STORE_TOKEN', valueFrom: { secretKeyRef: { name, key: 'FW_STORE_TOKEN' } } },
  ];
  // A cuda rank gets one GPU of its node (the device plugin sets what it sees; LOCAL_RANK 0 selects it).
  // Extended resources must be requested and limited alike.
  const gpu: Record<string, string> = req.device === 'cuda' ? { 'nvidia.com/gpu': '1' } : {};
  const resources = {
    requests: { cpu: o.cpuPerPod ?? String(req.threadsPerRank), memory: o.memoryPerPod ?? '2Gi', ...gpu },
    limits: { memory: o.memoryPerPod ?? '2Gi', ...gpu },
  };
  const job: k8s.V1Job = {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: o.namespace, labels },
    spec: {
      completionMode: 'Indexed',
      completions: req.worldSize,
      parallelism: req.worldSize,
      // The trainer restarts whole attempts from a checkpoint; Kubernetes must not restart single pods.
      backoffLimit: 0,
      ttlSecondsAfterFinished: 3600,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          subdomain: name,
          containers: [
            {
              name: 'worker',
              image: o.image,
              command: [req.workerBin, req.specPath],
              workingDir: req.workDir,
              env,
              resources,
              volumeMounts: [{ name: 'work', mountPath: o.workRoot }],
            },
          ],
          volumes: [{ name: 'work', persistentVolumeClaim: { claimName: o.workVolumeClaim } }],
          // One pod per node: pods of the same attempt repel each other.
          affinity: {
            podAntiAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: labels }, topologyKey: 'kubernetes.io/hostname' }],
            },
          },
        },
      },
    },
  };
  return { secret, job };
}

export function createKubernetesLauncher(o: KubernetesLauncherOptions, kc: k8s.KubeConfig = defaultKubeConfig()): Launcher {
  const batch = kc.makeApiClient(k8s.BatchV1Api);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const logs = new k8s.Log(kc);
  return {
    name: 'kubernetes',
    maxWorldSize: () => o.maxNodes,
    async launch(req: LaunchRequest): Promise<LaunchedAttempt> {
      const { secret, job } = buildManifests(req, o);
      const name = job.metadata!.name!;
      try {
        await core.createNamespacedSecret({ namespace: o.namespace, body: secret });
        await batch.createNamespacedJob({ namespace: o.namespace, body: job });
      } catch (e) {
        throw new LaunchError(`kubernetes: cannot create job ${name}: ${(e as Error).message}`);
      }
      let stopped: string | undefined;
      const remove = async () => {
        await batch.deleteNamespacedJob({ name, namespace: o.namespace, propagationPolicy: 'Foreground' }).catch(() => undefined);
        await core.deleteNamespacedSecret({ name, namespace: o.namespace }).catch(() => undefined);
      };

      // Per rank (= completion index): its pod's log lines (metrics, checkpoints, errors) and its exit.
      const ranks = Array.from({ length: req.worldSize }, (_, rank) => {
        const early: string[] = [];
        let listener: ((l: string) => void) | undefined;
        let resolveExit!: (e: RankExit) => void;
        const exited = new Promise<RankExit>((r) => (resolveExit = r));
        return {
          following: false,
          settled: false,
          aborts: [] as AbortController[],
          push: (l: string) => (listener ? listener(l) : early.push(l)),
          exit(e: RankExit) {
            if (this.settled) return;
            this.settled = true;
            resolveExit(e);
          },
          handle: {
            rank,
            pid: null,
            host: null,
            onLine: (cb: (l: string) => void) => {
              listener = cb;
              for (const l of early.splice(0)) cb(l);
            },
            stderrTail: () => '',
            exited,
          } satisfies RankHandle,
        };
      });

      const follow = async (rank: (typeof ranks)[number], pod: string) => {
        rank.following = true;
        const out = new PassThrough();
        createInterface({ input: out }).on('line', rank.push);
        rank.aborts.push(await logs.log(o.namespace, pod, 'worker', out, () => out.end(), { follow: true }));
      };

      const poll = async () => {
        try {
          const pods = await core.listNamespacedPod({ namespace: o.namespace, labelSelector: `job-name=${name}` });
          for (const pod of pods.items) {
            const index = Number(pod.metadata?.annotations?.['batch.kubernetes.io/job-completion-index']);
            const rank = ranks[index];
            if (!rank || !pod.metadata?.name) continue;
            const phase = pod.status?.phase;
            if (!rank.following && (phase === 'Running' || phase === 'Succeeded' || phase === 'Failed')) await follow(rank, pod.metadata.name);
            const term = pod.status?.containerStatuses?.find((c) => c.name === 'worker')?.state?.terminated;
            if (term) rank.exit({ code: term.exitCode, signal: term.signal ? `SIG${term.signal}` : null });
          }
          const j = await batch.readNamespacedJobStatus({ name, namespace: o.namespace });
          if ((j.status?.succeeded ?? 0) >= req.worldSize) for (const r of ranks) r.exit({ code: 0, signal: null });
          const failed = (j.status?.failed ?? 0) > 0;
          if (stopped || failed) {
            await remove();
            for (const r of ranks) r.exit({ code: null, signal: stopped ?? 'POD_FAILED' });
          }
        } catch (e) {
          if ((e as { code?: number }).code === 404) for (const r of ranks) r.exit({ code: null, signal: 'JOB_DELETED' });
        }
        if (ranks.every((r) => r.settled)) {
          for (const r of ranks) for (const a of r.aborts) a.abort();
          return;
        }
        setTimeout(() => void poll(), o.pollMs ?? 2000);
      };
      void poll();
      return {
        ranks: ranks.map((r) => r.handle),
        signal(sig) {
          stopped ??= sig;
        },
      };
    },
  };
}

function defaultKubeConfig(): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromDefault();
  return kc;
}
