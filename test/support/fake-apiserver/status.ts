/**
 * Kubernetes `Status` objects, shaped as the real API server sends them for errors (and for a
 * successful DELETE). Clients read `code`, `reason` and `details`; messages follow the
 * apiserver's wording so that error text in logs looks as it will against a real cluster.
 */
export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { name?: string; group?: string; kind?: string; uid?: string };
  code: number;
}

export class StatusError extends Error {
  constructor(readonly status: Status) {
    super(status.message ?? status.reason ?? String(status.code));
  }
}

interface Target {
  group: string;
  resource: string;
  name?: string;
}

function qualified(t: Target): string {
  return t.group === '' ? t.resource : `${t.resource}.${t.group}`;
}

function failure(code: number, reason: string, message: string, t?: Target): StatusError {
  return new StatusError({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    ...(t
      ? {
          details: {
            ...(t.name !== undefined ? { name: t.name } : {}),
            ...(t.group !== '' ? { group: t.group } : {}),
            kind: t.resource,
          },
        }
      : {}),
    code,
  });
}

export const statusErrors = {
  notFound: (t: Target) => failure(404, 'NotFound', `${qualified(t)} "${t.name}" not found`, t),
  noRoute: () => failure(404, 'NotFound', 'the server could not find the requested resource'),
  alreadyExists: (t: Target) =>
    failure(409, 'AlreadyExists', `${qualified(t)} "${t.name}" already exists`, t),
  conflict: (t: Target) =>
    failure(
      409,
      'Conflict',
      `Operation cannot be fulfilled on ${qualified(t)} "${t.name}": the object has been modified; please apply your changes to the latest version and try again`,
      t,
    ),
  preconditionFailed: (t: Target, what: string) =>
    failure(
      409,
      'Conflict',
      `Operation cannot be fulfilled on ${qualified(t)} "${t.name}": ${what}`,
      t,
    ),
  badRequest: (message: string) => failure(400, 'BadRequest', message),
  invalid: (t: Target, message: string) =>
    failure(422, 'Invalid', `${t.resource} "${t.name ?? ''}" is invalid: ${message}`, t),
  unauthorized: () => failure(401, 'Unauthorized', 'Unauthorized'),
  forbidden: (user: string, verb: string, t: Target, namespace: string | undefined) =>
    failure(
      403,
      'Forbidden',
      `${qualified(t)}${t.name ? ` "${t.name}"` : ''} is forbidden: User "${user}" cannot ${verb} resource "${t.resource}" in API group "${t.group}"${namespace ? ` in the namespace "${namespace}"` : ' at the cluster scope'}`,
      t,
    ),
  methodNotAllowed: (method: string) =>
    failure(
      405,
      'MethodNotAllowed',
      `the server does not allow this method on the requested resource (${method})`,
    ),
  unsupportedMediaType: (type: string) =>
    failure(
      415,
      'UnsupportedMediaType',
      `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got ${type})`,
    ),
  expired: (requested: number, oldest: number) =>
    failure(410, 'Expired', `too old resource version: ${requested} (${oldest})`),
  internal: (message: string) => failure(500, 'InternalError', message),
};

export function successStatus(t: Target, uid: string): Status {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Success',
    details: {
      ...(t.name !== undefined ? { name: t.name } : {}),
      ...(t.group !== '' ? { group: t.group } : {}),
      kind: t.resource,
      uid,
    },
    code: 200,
  };
}
