/** SQL for what the trainer learns from the bus: dataset versions, trigger policies, handled event ids. */
import type { Queryable } from '@flywheel/db';

export interface DatasetRow {
  name: string;
  version: string;
  dataset_id: string;
  manifest_uri: string;
  tokenizer: string;
  ready_at: Date;
}

export interface PolicyRow {
  dataset_name: string;
  enabled: boolean;
  template: Record<string, unknown>;
  updated_at: Date;
}

export function createCatalogRepository(db: Queryable) {
  return {
    async upsertDataset(d: Omit<DatasetRow, 'ready_at'>): Promise<void> {
      await db.query(
        `INSERT INTO datasets (name, version, dataset_id, manifest_uri, tokenizer) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name, version) DO UPDATE SET manifest_uri = $4, tokenizer = $5, dataset_id = $3`,
        [d.name, d.version, d.dataset_id, d.manifest_uri, d.tokenizer],
      );
    },

    /** A version by hash, or the newest one for `latest`. */
    async findDataset(name: string, version: string): Promise<DatasetRow | undefined> {
      const r =
        version === 'latest'
          ? await db.query<DatasetRow>(`SELECT * FROM datasets WHERE name = $1 ORDER BY ready_at DESC LIMIT 1`, [name])
          : await db.query<DatasetRow>(`SELECT * FROM datasets WHERE name = $1 AND version = $2`, [name, version]);
      return r.rows[0];
    },

    async setPolicy(datasetName: string, enabled: boolean, template: Record<string, unknown>): Promise<PolicyRow> {
      const r = await db.query<PolicyRow>(
        `INSERT INTO policies (dataset_name, enabled, template) VALUES ($1, $2, $3)
         ON CONFLICT (dataset_name) DO UPDATE SET enabled = $2, template = $3, updated_at = now()
         RETURNING dataset_name, enabled, template, updated_at`,
        [datasetName, enabled, JSON.stringify(template)],
      );
      return r.rows[0]!;
    },

    async getPolicy(datasetName: string): Promise<PolicyRow | undefined> {
      const r = await db.query<PolicyRow>(`SELECT dataset_name, enabled, template, updated_at FROM policies WHERE dataset_name = $1`, [datasetName]);
      return r.rows[0];
    },

    async listPolicies(): Promise<PolicyRow[]> {
      const r = await db.query<PolicyRow>(`SELECT dataset_name, enabled, template, updated_at FROM policies ORDER BY dataset_name`);
      return r.rows;
    },

    async deletePolicy(datasetName: string): Promise<boolean> {
      const r = await db.query(`DELETE FROM policies WHERE dataset_name = $1`, [datasetName]);
      return r.rowCount === 1;
    },

    /** Records an event id; false when it was already there (a redelivery). */
    async markProcessed(id: string, subject: string, runId: string | null): Promise<boolean> {
      const r = await db.query(`INSERT INTO processed_events (id, subject, run_id) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`, [
        id,
        subject,
        runId,
      ]);
      return r.rowCount === 1;
    },
  };
}

export type CatalogRepository = ReturnType<typeof createCatalogRepository>;
