/**
 * The problem+json catalogue (RFC 9457). Every error a flywheel HTTP API
 * returns has one of these stable `type` URIs; clients branch on `type`,
 * never on `title` or `detail`. Services add their own domain problems with
 * defineProblem() in their own errors.ts and throw ProblemError; the one
 * error handler (error-handler.ts) renders both.
 *
 * The `type`s are URNs (urn:flywheel:problem:<slug>): stable identifiers that
 * do not pretend to be dereferenceable web pages. The slugs are pinned by
 * errors.test.ts and listed in the README.
 */

export const PROBLEM_TYPE_PREFIX = 'urn:flywheel:problem:';
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export interface ProblemType {
  readonly type: string;
  readonly title: string;
  readonly status: number;
}

/** A catalogue entry: `slug` becomes the stable type URI. */
export function defineProblem(slug: string, title: string, status: number): ProblemType {
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(slug)) throw new Error(`problem slug ${JSON.stringify(slug)} must be kebab-case`);
  if (!Number.isInteger(status) || status < 400 || status > 599) throw new Error(`problem status ${status} must be 4xx or 5xx`);
  return Object.freeze({ type: PROBLEM_TYPE_PREFIX + slug, title, status });
}

/** The platform-wide problems every service can return. */
export const problems = {
  badRequest: defineProblem('bad-request', 'Bad request', 400),
  validationFailed: defineProblem('validation-failed', 'Request validation failed', 400),
  malformedBody: defineProblem('malformed-body', 'Malformed request body', 400),
  unauthorized: defineProblem('unauthorized', 'Missing or invalid bearer token', 401),
  forbidden: defineProblem('forbidden', 'Forbidden', 403),
  routeNotFound: defineProblem('route-not-found', 'No such route', 404),
  notFound: defineProblem('not-found', 'Resource not found', 404),
  methodNotAllowed: defineProblem('method-not-allowed', 'Method not allowed', 405),
  notAcceptable: defineProblem('not-acceptable', 'Not acceptable', 406),
  conflict: defineProblem('conflict', 'Conflict', 409),
  gone: defineProblem('gone', 'Gone', 410),
  payloadTooLarge: defineProblem('payload-too-large', 'Payload too large', 413),
  unsupportedMediaType: defineProblem('unsupported-media-type', 'Unsupported media type', 415),
  unprocessable: defineProblem('unprocessable', 'Unprocessable content', 422),
  tooManyRequests: defineProblem('too-many-requests', 'Too many requests', 429),
  internal: defineProblem('internal', 'Internal server error', 500),
  notReady: defineProblem('not-ready', 'Service not ready', 503),
  unavailable: defineProblem('unavailable', 'Service unavailable', 503),
  timeout: defineProblem('timeout', 'Upstream timeout', 504),
} as const;

export type ProblemName = keyof typeof problems;

/** Extension members added to the problem document (e.g. `errors`, `checks`). */
export type ProblemExtensions = Record<string, unknown>;

/**
 * A typed error that renders as its catalogue entry. `detail` is shown to
 * the client, so it must not carry secrets; `cause` is only logged.
 */
export class ProblemError extends Error {
  override name = 'ProblemError';
  readonly problem: ProblemType;
  readonly detail: string | undefined;
  readonly extensions: ProblemExtensions | undefined;
  /** Read by Fastify's reply logic. */
  readonly statusCode: number;
  readonly headers: Record<string, string> | undefined;
  constructor(
    problem: ProblemType,
    detail?: string,
    options?: { cause?: unknown; extensions?: ProblemExtensions; headers?: Record<string, string> },
  ) {
    super(detail ? `${problem.title}: ${detail}` : problem.title, options?.cause ? { cause: options.cause } : undefined);
    this.problem = problem;
    this.detail = detail;
    this.extensions = options?.extensions;
    this.statusCode = problem.status;
    this.headers = options?.headers;
  }
}

export const isProblemError = (e: unknown): e is ProblemError => e instanceof ProblemError;

/** The problem document, in RFC 9457's member order, with extensions after. */
export interface ProblemDocument {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  [extension: string]: unknown;
}

export function problemDocument(
  problem: ProblemType,
  detail: string | undefined,
  instance: string | undefined,
  extensions?: ProblemExtensions,
): ProblemDocument {
  const doc: ProblemDocument = { type: problem.type, title: problem.title, status: problem.status };
  if (detail !== undefined) doc.detail = detail;
  if (instance !== undefined) doc.instance = instance;
  for (const [k, v] of Object.entries(extensions ?? {})) {
    if (!(k in doc)) doc[k] = v;
  }
  return doc;
}

const BY_STATUS: ReadonlyMap<number, ProblemType> = new Map([
  [400, problems.badRequest],
  [401, problems.unauthorized],
  [403, problems.forbidden],
  [404, problems.notFound],
  [405, problems.methodNotAllowed],
  [406, problems.notAcceptable],
  [409, problems.conflict],
  [410, problems.gone],
  [413, problems.payloadTooLarge],
  [415, problems.unsupportedMediaType],
  [422, problems.unprocessable],
  [429, problems.tooManyRequests],
  [503, problems.unavailable],
  [504, problems.timeout],
]);

/** The catalogue entry for a bare HTTP status (framework errors that carry only a statusCode). */
export function problemForStatus(status: number): ProblemType {
  return BY_STATUS.get(status) ?? (status >= 500 ? problems.internal : problems.badRequest);
}
