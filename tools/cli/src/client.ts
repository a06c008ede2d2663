/** A small client of the trainer API: JSON requests, problem+json errors, and the server-sent metrics stream. */
import type { CreateRunBody, MetricPoint, RunView } from '@flywheel/contracts';

/** The API answered with an error (problem+json). */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  readonly type: string | undefined;
  constructor(status: number, message: string, type?: string) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

/** The trainer could not be reached (connection refused, DNS, timeout). */
export class UnreachableError extends Error {
  override name = 'UnreachableError';
}

export type StreamEvent =
  | { event: 'metric'; data: MetricPoint }
  | { event: 'status'; data: RunView }
  | { event: 'end'; data: { status: string; modelUri: string | null; reason: string | null } };

export interface TrainerClient {
  submit(body: CreateRunBody): Promise<RunView>;
  list(status?: string): Promise<RunView[]>;
  get(id: string): Promise<RunView>;
  cancel(id: string): Promise<RunView>;
  stream(id: string, fromStep?: number): AsyncGenerator<StreamEvent>;
}

export function createClient(baseUrl: string, token: string | undefined): TrainerClient {
  const base = baseUrl.replace(/\/+$/, '');
  const headers = (json: boolean): Record<string, string> => ({
    ...(token ? { authorization: `Bearer ${token}` } : {}),
    ...(json ? { 'content-type': 'application/json' } : {}),
  });

  async function call(method: string, path: string, body?: unknown): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${base}${path}`, { method, headers: headers(body !== undefined), ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    } catch (e) {
      throw new UnreachableError(`cannot reach the trainer at ${base}: ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message}`);
    }
    if (res.status >= 500 && res.status !== 501) {
      const text = await res.text();
      throw new UnreachableError(`the trainer at ${base} answered ${res.status}: ${text.slice(0, 300)}`);
    }
    if (!res.ok) {
      const text = await res.text();
      let detail = text;
      let type: string | undefined;
      try {
        const p = JSON.parse(text) as { title?: string; detail?: string; type?: string; errors?: { path?: string; message?: string }[] };
        type = p.type;
        detail = [p.detail ?? p.title ?? text, ...(p.errors ?? []).map((e) => `  ${e.path ?? ''} ${e.message ?? ''}`)].join('\n');
      } catch {
        /* not JSON */
      }
      throw new ApiError(res.status, detail, type);
    }
    return res;
  }

  return {
    submit: async (body) => (await (await call('POST', '/v1/runs', body)).json()) as RunView,
    list: async (status) => ((await (await call('GET', `/v1/runs${status ? `?status=${encodeURIComponent(status)}` : ''}`)).json()) as { runs: RunView[] }).runs,
    get: async (id) => (await (await call('GET', `/v1/runs/${encodeURIComponent(id)}`)).json()) as RunView,
    cancel: async (id) => (await (await call('POST', `/v1/runs/${encodeURIComponent(id)}/cancel`)).json()) as RunView,
    async *stream(id, fromStep = 0) {
      const res = await call('GET', `/v1/runs/${encodeURIComponent(id)}/metrics?fromStep=${fromStep}`);
      const decoder = new TextDecoder();
      let buf = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
          }
          if (data.length === 0) continue;
          yield { event, data: JSON.parse(data.join('\n')) } as StreamEvent;
        }
      }
    },
  };
}
