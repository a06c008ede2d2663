// Stream layout and idempotent provisioning.
//
// Two streams per namespace:
//   FW      every catalogued event, subjects fw.<service>.> for each service
//           prefix in the catalogue (fw.data.>, fw.trainer.>, ...), with the
//           dedup window that makes `Nats-Msg-Id` publishes idempotent;
//   FW_DLQ  dead letters, fw.dlq.>, kept longer and never consumed by services.
// They are separate because a stream on `fw.>` would also swallow `fw.dlq.>`
// and NATS forbids two streams with overlapping subjects.
import { subjects, DLQ_PREFIX } from '@flywheel/contracts';
import { nanos } from '@nats-io/transport-node';
import { DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { JetStreamManager, StreamConfig } from '@nats-io/jetstream';
import { BusConfigError } from './errors.ts';
import type { StreamLayout, StreamSettings } from './types.ts';

const NAMESPACE_RE = /^[A-Za-z0-9_-]{1,64}$/;

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** Build the layout of a namespace (undefined = production names). */
export function streamLayout(namespace: string | undefined): StreamLayout {
  if (namespace !== undefined && !NAMESPACE_RE.test(namespace)) {
    throw new BusConfigError(`namespace '${namespace}' must match ${NAMESPACE_RE.source}`);
  }
  const streamPrefix = namespace === undefined ? '' : `${namespace.toUpperCase()}_`;
  const subjectPrefix = namespace === undefined ? '' : `${namespace}.`;
  return {
    events: `${streamPrefix}FW`,
    deadLetters: `${streamPrefix}FW_DLQ`,
    wireSubject: (s) => `${subjectPrefix}${s}`,
    logicalSubject: (w) => (w.startsWith(subjectPrefix) ? w.slice(subjectPrefix.length) : w),
    dlqWireSubject: (s) => `${subjectPrefix}${DLQ_PREFIX}${s}`,
  };
}

/** `fw.<service>.>` filters covering every catalogued subject. */
export function eventSubjectFilters(layout: StreamLayout): string[] {
  const prefixes = new Set(Object.values(subjects).map((s) => s.split('.').slice(0, 2).join('.')));
  return [...prefixes].sort().map((p) => layout.wireSubject(`${p}.>`));
}

function desiredStreams(layout: StreamLayout, settings: StreamSettings): Partial<StreamConfig>[] {
  const storage = settings.storage === 'memory' ? StorageType.Memory : StorageType.File;
  const replicas = settings.replicas ?? 1;
  const duplicateWindow = settings.duplicateWindowMs ?? 2 * MINUTE;
  const maxAge = settings.maxAgeMs ?? 7 * DAY;
  if (duplicateWindow <= 0 || duplicateWindow > maxAge) {
    throw new BusConfigError(`duplicateWindowMs must be > 0 and <= maxAgeMs (got ${duplicateWindow})`);
  }
  const common = {
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    storage,
    num_replicas: replicas,
    duplicate_window: nanos(duplicateWindow),
  };
  return [
    {
      ...common,
      name: layout.events,
      description: 'flywheel events (see docs/events.md)',
      subjects: eventSubjectFilters(layout),
      max_age: nanos(maxAge),
    },
    {
      ...common,
      name: layout.deadLetters,
      description: 'flywheel dead letters',
      subjects: [layout.wireSubject(`${DLQ_PREFIX}>`)],
      max_age: nanos(settings.dlqMaxAgeMs ?? 30 * DAY),
    },
  ];
}

function isNotFound(e: unknown): boolean {
  // 10059: stream not found
  return e instanceof JetStreamApiError && e.code === 10059;
}

function isAlreadyExists(e: unknown): boolean {
  // 10058: stream name already in use with a different configuration
  return e instanceof JetStreamApiError && e.code === 10058;
}

/**
 * Create the streams, or update them to the desired config when they exist.
 * Safe to run concurrently from many processes: a lost creation race turns
 * into an update.
 */
export async function provisionStreams(
  jsm: JetStreamManager,
  layout: StreamLayout,
  settings: StreamSettings = {},
): Promise<void> {
  for (const cfg of desiredStreams(layout, settings)) {
    const name = cfg.name as string;
    let exists = true;
    try {
      await jsm.streams.info(name);
    } catch (e) {
      if (!isNotFound(e)) throw e;
      exists = false;
    }
    if (!exists) {
      try {
        await jsm.streams.add({ ...cfg, name });
        continue;
      } catch (e) {
        if (!isAlreadyExists(e)) throw e;
      }
    }
    const { name: _name, storage: _storage, ...mutable } = cfg;
    await jsm.streams.update(name, mutable);
  }
}
