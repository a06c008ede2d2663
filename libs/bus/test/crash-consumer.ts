// Child process of crash.test.ts: a consumer whose handler applies each event
// to Postgres idempotently (keyed by event id) and then, after FW_KILL_AFTER
// events, SIGKILLs itself between the database write and the ack, at a random
// point (at once, after a microtask, or after a random timer).
import pg from 'pg';
import { subjects } from '@flywheel/contracts';
import { connectBus } from '../src/index.ts';

const env = (k: string): string => {
  const v = process.env[k];
  if (v === undefined || v === '') throw new Error(`crash-consumer: ${k} is required`);
  return v;
};
const table = env('FW_TABLE');
if (!/^[a-z0-9_]+$/.test(table)) throw new Error('crash-consumer: bad FW_TABLE');
const killAfter = Number(process.env['FW_KILL_AFTER'] ?? '0');

const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), max: 1 });
const bus = await connectBus({ servers: env('NATS_URL'), namespace: env('FW_NS'), provision: false });

let applied = 0;
const die = (): never => {
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
};

await bus.consume(
  subjects.dataIngestRequested,
  async (event, delivery) => {
    await pool.query(
      `WITH log AS (INSERT INTO ${table}_log (event_id, delivery) VALUES ($1, $2))
       INSERT INTO ${table} (event_id) VALUES ($1) ON CONFLICT (event_id) DO NOTHING`,
      [event.id, delivery.deliveryCount],
    );
    applied++;
    if (killAfter > 0 && applied >= killAfter) {
      const r = Math.random();
      if (r < 0.34) die();
      else if (r < 0.67) await Promise.resolve().then(die);
      else await new Promise(() => setTimeout(die, Math.random() * 30));
    }
  },
  { durable: 'crash', backoffMs: [250], maxDeliver: Number(process.env['FW_MAX_DELIVER'] ?? '1000') },
);
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  void bus.close().then(() => pool.end()).then(() => process.exit(0));
});
