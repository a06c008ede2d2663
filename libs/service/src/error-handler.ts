/**
 * The one place exceptions become HTTP responses. Every error, whether a
 * ProblemError thrown by a service, a schema validation failure, or one of
 * Fastify's own (body too large, bad media type, malformed JSON), leaves as
 * application/problem+json with a catalogue `type`. Unknown routes get the
 * same treatment from the not-found handler. 5xx details are logged, never
 * sent: the client sees only the generic title and the request id.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { isProblemError, PROBLEM_CONTENT_TYPE, problemDocument, problemForStatus, problems } from './errors.ts';
import type { ProblemExtensions, ProblemType } from './errors.ts';

/** Fastify's own error codes that have a dedicated catalogue entry. */
const FASTIFY_CODES: Readonly<Record<string, ProblemType>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: problems.payloadTooLarge,
  FST_ERR_CTP_INVALID_MEDIA_TYPE: problems.unsupportedMediaType,
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: problems.malformedBody,
  FST_ERR_CTP_EMPTY_JSON_BODY: problems.malformedBody,
  FST_ERR_CTP_INVALID_JSON_BODY: problems.malformedBody,
  FST_ERR_CTP_EMPTY_TYPE: problems.unsupportedMediaType,
  FST_ERR_CTP_INVALID_TYPE: problems.unsupportedMediaType,
};

/** The request path without its query string (queries may carry secrets). */
export function instanceOf(request: FastifyRequest): string {
  const url = request.url;
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/** Sends a problem document; the single writer of problem+json responses. */
export function sendProblem(
  reply: FastifyReply,
  problem: ProblemType,
  detail?: string,
  extensions?: ProblemExtensions,
): FastifyReply {
  const doc = problemDocument(problem, detail, instanceOf(reply.request), extensions);
  return reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(doc));
}

interface AjvLikeError {
  instancePath?: string;
  message?: string;
  keyword?: string;
  params?: unknown;
}

function validationDetails(error: FastifyError): ProblemExtensions {
  const where = error.validationContext ?? 'request';
  const errors = (error.validation ?? []).map((v: AjvLikeError) => ({
    in: where,
    path: v.instancePath ?? '',
    message: v.message ?? 'is invalid',
    keyword: v.keyword,
  }));
  return { errors };
}

export function handleError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (isProblemError(error)) {
    if (error.problem.status >= 500) request.log.error({ err: error }, 'request failed');
    if (error.headers) reply.headers(error.headers);
    return sendProblem(reply, error.problem, error.detail, error.extensions);
  }
  if (error.validation) {
    return sendProblem(reply, problems.validationFailed, error.message, validationDetails(error));
  }
  const known = error.code ? FASTIFY_CODES[error.code] : undefined;
  if (known) return sendProblem(reply, known, error.message);
  const status = typeof error.statusCode === 'number' ? error.statusCode : 500;
  if (status >= 400 && status < 500) return sendProblem(reply, problemForStatus(status), error.message);
  request.log.error({ err: error }, 'unhandled error');
  return sendProblem(reply, problems.internal, undefined, { request_id: request.id });
}

/** Installs the error and not-found handlers on the root instance (fastify-plugin: not encapsulated). */
export const errorHandlerPlugin = fp(
  async (app: FastifyInstance) => {
    app.setErrorHandler(handleError);
    app.setNotFoundHandler((request, reply) =>
      sendProblem(reply, problems.routeNotFound, `no route for ${request.method} ${instanceOf(request)}`),
    );
  },
  { name: '@flywheel/service/errors', fastify: '5.x' },
);
