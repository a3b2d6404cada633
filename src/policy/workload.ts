import { InputFields, fieldError } from './input-fields.js';

export type PortProtocol = 'HTTP' | 'HTTP2' | 'GRPC' | 'TCP';
export const PORT_PROTOCOLS: readonly PortProtocol[] = ['HTTP', 'HTTP2', 'GRPC', 'TCP'];

/** Istio's label for the pods of a Gateway API gateway (waypoints included): the Gateway's name. */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

export type WorkloadKind = 'sidecar' | 'gateway' | 'waypoint';
export const WORKLOAD_KINDS: readonly WorkloadKind[] = ['sidecar', 'gateway', 'waypoint'];

/** A Service (or ServiceEntry) whose traffic a waypoint serves: what `targetRefs` can name. */
export interface ServiceRef {
  readonly namespace: string;
  readonly name: string;
  readonly kind: 'Service' | 'ServiceEntry';
}

/** A workload (pod) as policy selection and bundles see it. */
export interface Workload {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount: string;
  /**
   * A sidecar, a gateway (which may be a Gateway API gateway, see selection.ts) or an ambient
   * waypoint proxy (policies reach it only through targetRefs).
   */
  readonly kind: WorkloadKind;
  /** Workload (target) ports, sorted by number. */
  readonly ports: readonly { readonly number: number; readonly protocol: PortProtocol }[];
  /**
   * Waypoints only: the services that use it, when known. Empty: every service some policy
   * attaches to is assumed to use it.
   */
  readonly services: readonly ServiceRef[];
}

/** `name`, `namespace/name`, or `{name, namespace, kind}`; the namespace defaults to `namespace`. */
export function parseServiceRef(value: unknown, path: string, namespace: string): ServiceRef {
  if (typeof value === 'string') {
    const [a, b, extra] = value.split('/');
    if (extra !== undefined || a === '' || b === '') {
      throw fieldError(path, `"${value}" is not <name> or <namespace>/<name>`);
    }
    return b === undefined
      ? { namespace, name: a as string, kind: 'Service' }
      : { namespace: a as string, name: b, kind: 'Service' };
  }
  const f = InputFields.of(value, path);
  return {
    namespace: f.string('namespace') || namespace,
    name: f.requiredString('name'),
    kind: f.oneOf('kind', ['Service', 'ServiceEntry'] as const, 'Service'),
  };
}

export function parseWorkload(value: unknown, path = 'workload'): Workload {
  const f = InputFields.of(value, path);
  const ports = f.list('ports').map((raw, i) => {
    const p = InputFields.of(raw, `${f.at('ports')}[${i}]`);
    return {
      number: p.port('number', true) as number,
      protocol: p.oneOf('protocol', PORT_PROTOCOLS, 'TCP'),
    };
  });
  ports.sort((a, b) => a.number - b.number);
  const namespace = f.requiredString('namespace');
  const name = f.requiredString('name');
  const kind = f.oneOf('kind', WORKLOAD_KINDS, 'sidecar');
  const labels = f.stringMap('labels');
  const services = f
    .list('services')
    .map((raw, i) => parseServiceRef(raw, `${f.at('services')}[${i}]`, namespace));
  if (services.length > 0 && kind !== 'waypoint') {
    throw fieldError(f.at('services'), 'only a waypoint (kind: waypoint) serves services');
  }
  return {
    namespace,
    name,
    // A waypoint's pods always carry the label of their Gateway; without one, the workload's
    // own name stands for the Gateway's (istioctl names both "waypoint" by default).
    labels:
      kind === 'waypoint' && labels[GATEWAY_NAME_LABEL] === undefined
        ? { ...labels, [GATEWAY_NAME_LABEL]: name }
        : labels,
    serviceAccount: f.string('serviceAccount') || 'default',
    kind,
    ports,
    services,
  };
}

/** The workload's identity as Istio's CA issues it. */
export function workloadSpiffeId(w: Workload, trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`;
}

export function workloadKey(w: Pick<Workload, 'namespace' | 'name'>): string {
  return `${w.namespace}/${w.name}`;
}

export function serviceKey(s: ServiceRef): string {
  return `${s.kind === 'Service' ? '' : `${s.kind}:`}${s.namespace}/${s.name}`;
}
