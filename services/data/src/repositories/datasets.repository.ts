/** SQL for datasets, their versions, processed events and the LSH band index. */
import type { Queryable } from '@flywheel/db';

export interface VersionRow {
  id: string;
  dataset_id: string;
  dataset_name: string;
  version: string;
  content_sha256: string;
  config_sha256: string;
  job_id: string;
  manifest_uri: string;
  manifest: Record<string, unknown>;
  report: Record<string, unknown>;
  created_at: Date;
}

export interface DatasetSummary {
  id: string;
  name: string;
  created_at: Date;
  versions: number;
  latest_version: string | null;
}

const VERSION_COLUMNS = `v.id, v.dataset_id, d.name AS dataset_name, v.version, v.content_sha256, v.config_sha256,
  v.job_id, v.manifest_uri, v.manifest, v.report, v.created_at`;

export function createDatasetsRepository(db: Queryable) {
  return {
    /** The dataset's id, creating the dataset on first use. */
    async ensureDataset(id: string, name: string): Promise<string> {
      const r = await db.query<{ id: string }>(
        `INSERT INTO datasets (id, name) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id`,
        [id, name],
      );
      return r.rows[0]!.id;
    },

    async list(limit: number, offset: number): Promise<DatasetSummary[]> {
      const r = await db.query<DatasetSummary>(
        `SELECT d.id, d.name, d.created_at, count(v.id)::int AS versions,
                (SELECT v2.version FROM versions v2 WHERE v2.dataset_id = d.id ORDER BY v2.created_at DESC LIMIT 1) AS latest_version
         FROM datasets d LEFT JOIN versions v ON v.dataset_id = d.id
         GROUP BY d.id ORDER BY d.name LIMIT $1 OFFSET $2`,
        [limit, offset],
      );
      return r.rows;
    },

    async getDataset(name: string): Promise<{ id: string; name: string; created_at: Date } | undefined> {
      const r = await db.query<{ id: string; name: string; created_at: Date }>(
        `SELECT id, name, created_at FROM datasets WHERE name = $1`,
        [name],
      );
      return r.rows[0];
    },

    async versions(datasetName: string): Promise<VersionRow[]> {
      const r = await db.query<VersionRow>(
        `SELECT ${VERSION_COLUMNS} FROM versions v JOIN datasets d ON d.id = v.dataset_id
         WHERE d.name = $1 ORDER BY v.created_at DESC`,
        [datasetName],
      );
      return r.rows;
    },

    async version(datasetName: string, version: string): Promise<VersionRow | undefined> {
      const r = await db.query<VersionRow>(
        `SELECT ${VERSION_COLUMNS} FROM versions v JOIN datasets d ON d.id = v.dataset_id
         WHERE d.name = $1 AND (v.version = $2 OR ($2 = 'latest' AND v.created_at =
           (SELECT max(created_at) FROM versions WHERE dataset_id = d.id)))`,
        [datasetName, version],
      );
      return r.rows[0];
    },

    /** Inserts a version; when the same version already exists, returns that one. */
    async insertVersion(v: Omit<VersionRow, 'dataset_name' | 'created_at'>): Promise<{ id: string; created: boolean }> {
      const r = await db.query<{ id: string }>(
        `INSERT INTO versions (id, dataset_id, version, content_sha256, config_sha256, job_id, manifest_uri, manifest, report)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (dataset_id, version) DO NOTHING RETURNING id`,
        [v.id, v.dataset_id, v.version, v.content_sha256, v.config_sha256, v.job_id, v.manifest_uri, JSON.stringify(v.manifest), JSON.stringify(v.report)],
      );
      if (r.rows[0]) return { id: r.rows[0].id, created: true };
      const e = await db.query<{ id: string }>(`SELECT id FROM versions WHERE dataset_id = $1 AND version = $2`, [v.dataset_id, v.version]);
      return { id: e.rows[0]!.id, created: false };
    },

    /** Stores a version's band keys in bulk (one statement per 50k keys). */
    async insertBands(versionId: string, datasetId: string, keys: readonly bigint[]): Promise<void> {
      const CHUNK = 50_000;
      for (let i = 0; i < keys.length; i += CHUNK) {
        const part = keys.slice(i, i + CHUNK).map(String);
        await db.query(
          `INSERT INTO lsh_bands (band_key, version_id, dataset_id)
           SELECT k, $2, $3 FROM unnest($1::bigint[]) AS k ON CONFLICT DO NOTHING`,
          [part, versionId, datasetId],
        );
      }
    },

    /**
     * Which of `keys` are already stored for the dataset (or for every dataset
     * when `datasetId` is null), leaving out versions made from the same source
     * bytes: re-cleaning a source with a new config must not dedup it against itself.
     */
    async lookupBands(keys: readonly bigint[], datasetId: string | null, excludeContentSha256?: string): Promise<Set<bigint>> {
      const found = new Set<bigint>();
      const CHUNK = 50_000;
      for (let i = 0; i < keys.length; i += CHUNK) {
        const r = await db.query<{ k: string }>(
          `SELECT DISTINCT b.band_key::text AS k FROM lsh_bands b JOIN versions v ON v.id = b.version_id
           WHERE b.band_key = ANY($1::bigint[]) AND ($2::uuid IS NULL OR b.dataset_id = $2)
             AND ($3::text IS NULL OR v.content_sha256 <> $3)`,
          [keys.slice(i, i + CHUNK).map(String), datasetId, excludeContentSha256 ?? null],
        );
        for (const row of r.rows) found.add(BigInt(row.k));
      }
      return found;
    },

    /** Records an applied event; false when it had been applied before. */
    async markEvent(eventId: string, subject: string): Promise<boolean> {
      const r = await db.query(
        `INSERT INTO processed_events (event_id, subject) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
        [eventId, subject],
      );
      return (r.rowCount ?? 0) > 0;
    },

    async eventSeen(eventId: string): Promise<boolean> {
      const r = await db.query(`SELECT 1 FROM processed_events WHERE event_id = $1`, [eventId]);
      return (r.rowCount ?? 0) > 0;
    },
  };
}
export type DatasetsRepository = ReturnType<typeof createDatasetsRepository>;
