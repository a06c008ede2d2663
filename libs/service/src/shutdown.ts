/**
 * Graceful shutdown. closeGracefully():
 *   1. marks the app draining: /readyz answers 503 so load balancers and
 *      Kubernetes stop routing new traffic here, while requests still
 *      arriving are served;
 *   2. runs the drainers one after another in registration order (a bus
 *      consumer stops pulling and finishes the messages it holds), each
 *      bounded by what is left of the timeout;
 *   3. closes the HTTP server: stops accepting, waits for in-flight requests
 *      (past the deadline, remaining connections are cut), runs onClose hooks;
 *   4. closes the resources (pool, bus connection, telemetry) in reverse
 *      registration order, like deferred calls: nothing a request or a
 *      drainer might still use is closed before they are done.
 * It is idempotent: a second call (a second SIGTERM) returns the same promise.
 */
import type { FastifyInstance } from 'fastify';

export interface Drainer {
  name: string;
  drain: () => Promise<unknown>;
}

export interface ShutdownReport {
  /** Drainers that did not finish in time or threw, by name. */
  failedDrainers: string[];
  /** Resources whose close did not finish in time or threw, by name. */
  failedResources: string[];
  /** True when the deadline passed and open connections were cut. */
  timedOut: boolean;
  ms: number;
}

export interface Resource {
  name: string;
  close: () => Promise<unknown>;
}

export interface ShutdownState {
  draining: boolean;
  /** Set when the HTTP server starts closing: requests still arriving on open connections get 503. */
  httpClosing: boolean;
  drainers: Drainer[];
  resources: Resource[];
  closing: Promise<ShutdownReport> | undefined;
}

function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), Math.max(0, ms));
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export function closeGracefully(app: FastifyInstance, state: ShutdownState, timeoutMs: number): Promise<ShutdownReport> {
  if (state.closing) return state.closing;
  state.draining = true;
  state.closing = (async () => {
    const t0 = Date.now();
    const left = () => timeoutMs - (Date.now() - t0);
    /** Runs one step under the remaining budget; returns its name when it failed or timed out. */
    const step = async (kind: string, name: string, run: () => Promise<unknown>, budgetMs = left()) => {
      try {
        const r = await within(Promise.resolve().then(run), budgetMs);
        if (r !== 'timeout') return undefined;
        app.log.warn({ [kind]: name }, `${kind} timed out`);
      } catch (err) {
        app.log.error({ err, [kind]: name }, `${kind} failed`);
      }
      return name;
    };
    const failedDrainers: string[] = [];
    for (const d of state.drainers) {
      const failed = await step('drainer', d.name, d.drain);
      if (failed) failedDrainers.push(failed);
    }
    state.httpClosing = true;
    const closing = app.close();
    // Keep-alive connections busy when close() began become idle once their
    // response is out; close them as they do, instead of waiting for the client.
    const reaper = setInterval(() => app.server.closeIdleConnections(), 50);
    let timedOut = false;
    const outcome = await within(closing, left()).finally(() => clearInterval(reaper));
    if (outcome === 'timeout') {
      timedOut = true;
      app.log.warn('shutdown deadline passed: closing open connections');
      app.server.closeAllConnections();
      await closing;
    }
    const failedResources: string[] = [];
    for (const r of [...state.resources].reverse()) {
      // Resources get a short grace period even past the deadline: closing a pool is quick.
      const failed = await step('resource', r.name, r.close, Math.max(left(), 1000));
      if (failed) failedResources.push(failed);
    }
    return { failedDrainers, failedResources, timedOut, ms: Date.now() - t0 };
  })();
  return state.closing;
}

export interface SignalOptions {
  signals?: readonly NodeJS.Signals[];
  /** Exit the process once closed (code 0, or 1 when draining failed). Default true. */
  exit?: boolean;
}

/**
 * SIGTERM/SIGINT -> app.closeGracefully(). Returns a function that removes
 * the handlers (tests, or a main() that manages signals itself).
 */
export function handleShutdownSignals(app: FastifyInstance, options: SignalOptions = {}): () => void {
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  const onSignal = (signal: NodeJS.Signals) => {
    app.log.info({ signal }, 'shutting down');
    app.closeGracefully().then(
      (report) => {
        app.log.info(report, 'shut down');
        const clean = report.failedDrainers.length === 0 && report.failedResources.length === 0 && !report.timedOut;
        if (options.exit ?? true) process.exit(clean ? 0 : 1);
      },
      (err: unknown) => {
        app.log.error({ err }, 'shutdown failed');
        if (options.exit ?? true) process.exit(1);
      },
    );
  };
  for (const s of signals) process.on(s, onSignal);
  return () => {
    for (const s of signals) process.off(s, onSignal);
  };
}
