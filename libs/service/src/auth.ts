/**
 * Bearer-token auth on every route but the probe and scrape endpoints.
 *
 * Runs in onRequest (before the body is read), so an unauthenticated client
 * cannot make the server parse a body, and unknown routes answer 401 before
 * 404 (no route discovery without a token). Tokens are compared in constant
 * time: both sides are hashed to 32 bytes and compared with timingSafeEqual,
 * and every configured token is checked, so neither the length nor the
 * position of a match leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { sendProblem } from './error-handler.ts';
import { problems } from './errors.ts';

export interface AuthOptions {
  /** Accepted bearer tokens (rotate by listing old and new). At least one, each >= 16 characters. */
  tokens: readonly string[];
  /** Serve /metrics without a token (Prometheus inside the cluster). Default true. */
  publicMetrics?: boolean;
}

/** Routes that never ask for a token: liveness, readiness, (by default) metrics. */
export const PUBLIC_ROUTES: readonly string[] = ['/healthz', '/readyz'];
export const MIN_TOKEN_LENGTH = 16;

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
/** RFC 6750 token68: the characters a bearer token may hold. */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

export function validateTokens(tokens: readonly string[]): Buffer[] {
  if (tokens.length === 0) throw new Error('auth.tokens is empty: configure at least one API token');
  return tokens.map((t, i) => {
    if (typeof t !== 'string' || t.length < MIN_TOKEN_LENGTH) {
      throw new Error(`auth.tokens[${i}] is shorter than ${MIN_TOKEN_LENGTH} characters`);
    }
    if (!TOKEN68.test(t)) {
      // Such a token could never be presented in a valid Bearer header.
      throw new Error(`auth.tokens[${i}] holds characters outside A-Z a-z 0-9 - . _ ~ + / (and trailing =)`);
    }
    return digest(t);
  });
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer +(\S+) *$/i.exec(header);
  if (!m?.[1] || !TOKEN68.test(m[1])) return undefined;
  return m[1];
}

export function tokenMatches(expected: readonly Buffer[], presented: string): boolean {
  const d = digest(presented);
  let ok = false;
  for (const e of expected) ok = timingSafeEqual(e, d) || ok;
  return ok;
}

export function isPublicRoute(request: FastifyRequest, publicMetrics: boolean): boolean {
  const route = request.routeOptions.url;
  if (route === undefined) return false;
  return PUBLIC_ROUTES.includes(route) || (publicMetrics && route === '/metrics');
}

export const authPlugin = fp(
  async (app: FastifyInstance, options: AuthOptions) => {
    const expected = validateTokens(options.tokens);
    const publicMetrics = options.publicMetrics ?? true;
    app.addHook('onRequest', async (request, reply) => {
      if (isPublicRoute(request, publicMetrics)) return;
      const header = request.headers.authorization;
      const token = bearerToken(header);
      if (token !== undefined && tokenMatches(expected, token)) return;
      reply.header('www-authenticate', 'Bearer realm="flywheel"');
      const detail =
        header === undefined
          ? 'missing bearer token'
          : token === undefined
            ? 'malformed Authorization header (expected "Bearer <token>")'
            : 'invalid bearer token';
      return sendProblem(reply, problems.unauthorized, detail);
    });
  },
  { name: '@flywheel/service/auth', fastify: '5.x' },
);
