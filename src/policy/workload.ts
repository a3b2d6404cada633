import { InputFields } from './input-fields.js';

export type PortProtocol = 'HTTP' | 'HTTP2' | 'GRPC' | 'TCP';
export const PORT_PROTOCOLS: readonly PortProtocol[] = ['HTTP', 'HTTP2', 'GRPC', 'TCP'];

/** A workload (pod) as policy selection and bundles see it. */
export interface Workload {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount: string;
  /** A sidecar, or a gateway (which may be a Gateway API gateway, see selection.ts). */
  readonly kind: 'sidecar' | 'gateway';
  /** Workload (target) ports, sorted by number. */
  readonly ports: readonly { readonly number: number; readonly protocol: PortProtocol }[];
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
  return {
    namespace: f.requiredString('namespace'),
    name: f.requiredString('name'),
    labels: f.stringMap('labels'),
    serviceAccount: f.string('serviceAccount') || 'default',
    kind: f.oneOf('kind', ['sidecar', 'gateway'] as const, 'sidecar'),
    ports,
  };
}

/** The workload's identity as Istio's CA issues it. */
export function workloadSpiffeId(w: Workload, trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`;
}

export function workloadKey(w: Pick<Workload, 'namespace' | 'name'>): string {
  return `${w.namespace}/${w.name}`;
}
