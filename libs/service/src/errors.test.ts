/**
 * Pins the problem catalogue: a `type` is a public contract (clients branch
 * on it), so renaming one, or changing its status, must fail this test and
 * be a deliberate change here, in the README and in clients.
 */
import { describe, expect, it } from 'vitest';
import { defineProblem, problemDocument, problemForStatus, ProblemError, problems } from './errors.ts';

describe('errors', () => {
  it('errors - the catalogue is pinned', () => {
    const pinned = Object.fromEntries(Object.entries(problems).map(([k, p]) => [k, `${p.status} ${p.type}`]));
    expect(pinned).toEqual({
      badRequest: '400 urn:flywheel:problem:bad-request',
      validationFailed: '400 urn:flywheel:problem:validation-failed',
      malformedBody: '400 urn:flywheel:problem:malformed-body',
      unauthorized: '401 urn:flywheel:problem:unauthorized',
      forbidden: '403 urn:flywheel:problem:forbidden',
      routeNotFound: '404 urn:flywheel:problem:route-not-found',
      notFound: '404 urn:flywheel:problem:not-found',
      methodNotAllowed: '405 urn:flywheel:problem:method-not-allowed',
      notAcceptable: '406 urn:flywheel:problem:not-acceptable',
      conflict: '409 urn:flywheel:problem:conflict',
      gone: '410 urn:flywheel:problem:gone',
      payloadTooLarge: '413 urn:flywheel:problem:payload-too-large',
      unsupportedMediaType: '415 urn:flywheel:problem:unsupported-media-type',
      unprocessable: '422 urn:flywheel:problem:unprocessable',
      tooManyRequests: '429 urn:flywheel:problem:too-many-requests',
      internal: '500 urn:flywheel:problem:internal',
      notReady: '503 urn:flywheel:problem:not-ready',
      unavailable: '503 urn:flywheel:problem:unavailable',
      timeout: '504 urn:flywheel:problem:timeout',
    });
    const types = Object.values(problems).map((p) => p.type);
    expect(new Set(types).size).toBe(types.length);
  });

  it('errors - defineProblem refuses bad slugs and statuses', () => {
    expect(() => defineProblem('Not Kebab', 't', 400)).toThrow(/kebab-case/);
    expect(() => defineProblem('ok', 't', 200)).toThrow(/4xx or 5xx/);
    expect(defineProblem('dataset-not-found', 'Dataset not found', 404).type).toBe('urn:flywheel:problem:dataset-not-found');
  });

  it('errors - ProblemError carries its entry, status and extensions', () => {
    const cause = new Error('db said no');
    const e = new ProblemError(problems.conflict, 'version 3 exists', { cause, extensions: { version: 3 } });
    expect([e.name, e.statusCode, e.detail, e.cause]).toEqual(['ProblemError', 409, 'version 3 exists', cause]);
    expect(problemDocument(e.problem, e.detail, '/v1/x', e.extensions)).toEqual({
      type: 'urn:flywheel:problem:conflict',
      title: 'Conflict',
      status: 409,
      detail: 'version 3 exists',
      instance: '/v1/x',
      version: 3,
    });
    // Extensions cannot overwrite the standard members.
    expect(problemDocument(problems.conflict, undefined, undefined, { status: 200 }).status).toBe(409);
  });

  it('errors - bare statuses map to catalogue entries', () => {
    expect(problemForStatus(404)).toBe(problems.notFound);
    expect(problemForStatus(418)).toBe(problems.badRequest);
    expect(problemForStatus(502)).toBe(problems.internal);
  });
});
