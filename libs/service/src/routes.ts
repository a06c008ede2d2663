/**
 * Route inventory. createApp installs an onRoute hook before anything else,
 * so every route any plugin registers (including HEAD routes Fastify adds
 * for GETs) is recorded. A service test walks listRoutes(app) and asserts
 * that each non-public route refuses a missing or wrong token, so a route
 * added later cannot silently skip auth.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';

export interface RouteInfo {
  method: string;
  url: string;
  /** True for the routes served without a token (/healthz, /readyz, maybe /metrics). */
  public: boolean;
}

const inventories = new WeakMap<FastifyInstance, RouteInfo[]>();

/** Called by createApp on the root instance, before any route exists. */
export function trackRoutes(app: FastifyInstance, isPublic: (url: string) => boolean): void {
  const routes: RouteInfo[] = [];
  inventories.set(app, routes);
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) routes.push({ method, url: route.url, public: isPublic(route.url) });
  });
}

/** Every route registered on an app made by createApp, in registration order. */
export function listRoutes(app: FastifyInstance): RouteInfo[] {
  const routes = inventories.get(app);
  if (!routes) throw new Error('listRoutes: the app was not made by createApp');
  return [...routes];
}

/**
 * A concrete URL for a route template, for inject()ing it in tests:
 * ':param' becomes 'x', '*' becomes 'x'.
 */
export function exampleUrl(url: string): string {
  return url.replace(/:[A-Za-z0-9_]+(\([^)]*\))?/g, 'x').replace(/\*/g, 'x');
}
