/** Trigger policies: which datasets start a run when they get a new version, and with what options. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { PolicyBody, PolicyParams } from '@flywheel/contracts';
import { ProblemError } from '@flywheel/service';
import { trainerProblems } from '../errors.ts';
import type { CatalogRepository, PolicyRow } from '../repositories/catalog.repository.ts';

const PolicyView = Type.Object({ datasetName: Type.String(), enabled: Type.Boolean(), template: Type.Record(Type.String(), Type.Unknown()), updatedAt: Type.String() });
const view = (p: PolicyRow) => ({ datasetName: p.dataset_name, enabled: p.enabled, template: p.template, updatedAt: p.updated_at.toISOString() });

export const policyRoutes: FastifyPluginAsyncTypebox<{ catalog: CatalogRepository }> = async (app, deps) => {
  app.put(
    '/v1/policies/:datasetName',
    { schema: { summary: 'Set the trigger policy of a dataset: a new version starts a run from the template', params: PolicyParams, body: PolicyBody, response: { 200: PolicyView } } },
    async (req) => view(await deps.catalog.setPolicy(req.params.datasetName, req.body.enabled ?? true, req.body.template as Record<string, unknown>)),
  );
  app.get('/v1/policies', { schema: { summary: 'List trigger policies', response: { 200: Type.Object({ policies: Type.Array(PolicyView) }) } } }, async () => ({
    policies: (await deps.catalog.listPolicies()).map(view),
  }));
  app.get('/v1/policies/:datasetName', { schema: { summary: 'A trigger policy', params: PolicyParams, response: { 200: PolicyView } } }, async (req) => {
    const p = await deps.catalog.getPolicy(req.params.datasetName);
    if (!p) throw new ProblemError(trainerProblems.policyNotFound, req.params.datasetName);
    return view(p);
  });
  app.delete('/v1/policies/:datasetName', { schema: { summary: 'Delete a trigger policy', params: PolicyParams } }, async (req, reply) => {
    if (!(await deps.catalog.deletePolicy(req.params.datasetName))) throw new ProblemError(trainerProblems.policyNotFound, req.params.datasetName);
    reply.code(204).send();
  });
};
