export { FakeApiServer } from './server.js';
export type {
  FakeApiServerOptions,
  RequestRecord,
  RequestFilter,
  TokenReviewHandler,
  Verb,
} from './server.js';
export type { KubeObject } from './store.js';
export type { TokenReviewStatus, ServiceAccountTokenRequest } from './service-account-issuer.js';
