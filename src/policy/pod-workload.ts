import { isRecord } from './parse-resources.js';
import { GATEWAY_NAME_LABEL, type PortProtocol, type Workload } from './workload.js';

/**
 * The protocol Istio infers from a port name or appProtocol (`http`, `http-web`, `grpc-api`,
 * ...; protocol.Parse in istio/pkg/config/protocol). Anything else is treated as TCP.
 */
function protocolOf(name: string | undefined, appProtocol: string | undefined): PortProtocol {
  const raw = (appProtocol ?? name?.split('-')[0] ?? '').toLowerCase();
  if (raw === 'http') return 'HTTP';
  if (raw === 'http2') return 'HTTP2';
  if (raw === 'grpc' || raw === 'grpc-web') return 'GRPC';
  return 'TCP';
}

/** The label Istio's gateway controllers put on the pods they deploy, and its waypoint value. */
const MANAGED_LABEL = 'gateway.istio.io/managed';
const WAYPOINT_CONTROLLER = 'istio.io-mesh-controller';

/**
 * A Kubernetes Pod as a policy workload: namespace, name, labels, service account and the
 * container ports (protocol from the port name, as Istio names service ports). A waypoint is a
 * pod the mesh controller deployed (`gateway.istio.io/managed: istio.io-mesh-controller`,
 * constants.ManagedGatewayMeshControllerLabel); gateways are recognised by Istio's gateway
 * labels (`istio: ingressgateway|egressgateway`, or the Gateway API's gateway-name label, the
 * only one istiod reads since 1.24). Returns null for anything that is not a running (or
 * pending) pod with a namespace and a name: finished pods have no proxy to enforce anything.
 */
export function workloadFromPod(object: unknown): Workload | null {
  if (!isRecord(object)) return null;
  const metadata = object['metadata'];
  if (!isRecord(metadata)) return null;
  const name = metadata['name'];
  const namespace = metadata['namespace'] ?? 'default';
  if (typeof name !== 'string' || name === '' || typeof namespace !== 'string') return null;
  const status = object['status'];
  const phase = isRecord(status) ? status['phase'] : undefined;
  if (phase === 'Succeeded' || phase === 'Failed') return null;
  if (metadata['deletionTimestamp']) return null;

  const labels: Record<string, string> = {};
  if (isRecord(metadata['labels'])) {
    for (const [k, v] of Object.entries(metadata['labels'])) {
      if (typeof v === 'string') labels[k] = v;
    }
  }
  const spec = isRecord(object['spec']) ? object['spec'] : {};
  const sa = spec['serviceAccountName'] ?? spec['serviceAccount'];
  const ports = new Map<number, PortProtocol>();
  const containers = Array.isArray(spec['containers']) ? spec['containers'] : [];
  for (const c of containers) {
    if (!isRecord(c) || !Array.isArray(c['ports'])) continue;
    for (const p of c['ports']) {
      if (!isRecord(p)) continue;
      const number = p['containerPort'];
      if (typeof number !== 'number' || !Number.isInteger(number) || number < 1 || number > 65535)
        continue;
      if (p['protocol'] !== undefined && p['protocol'] !== 'TCP') continue;
      const pname = typeof p['name'] === 'string' ? p['name'] : undefined;
      const app = typeof p['appProtocol'] === 'string' ? p['appProtocol'] : undefined;
      if (!ports.has(number)) ports.set(number, protocolOf(pname, app));
    }
  }
  const gateway =
    labels['istio'] === 'ingressgateway' ||
    labels['istio'] === 'egressgateway' ||
    labels[GATEWAY_NAME_LABEL] !== undefined;
  const waypoint = labels[MANAGED_LABEL] === WAYPOINT_CONTROLLER;
  return {
    namespace,
    name,
    labels,
    serviceAccount: typeof sa === 'string' && sa !== '' ? sa : 'default',
    kind: waypoint ? 'waypoint' : gateway ? 'gateway' : 'sidecar',
    ports: [...ports.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([number, protocol]) => ({ number, protocol })),
    services: [],
  };
}
