// The shapes of the rendered objects the chart tests read (a small subset of the Kubernetes API).
import type { K8sObject } from './helm-runner.js';

export interface Probe {
  httpGet: { path: string; port: string | number };
  initialDelaySeconds: number;
  periodSeconds: number;
  timeoutSeconds: number;
  failureThreshold: number;
}

export interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  runAsGroup?: number;
  fsGroup?: number;
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type: string };
  privileged?: boolean;
}

export interface Container {
  name: string;
  image: string;
  imagePullPolicy: string;
  args: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  ports: { name: string; containerPort: number; protocol: string }[];
  readinessProbe: Probe;
  livenessProbe: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: SecurityContext;
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}

export interface Volume {
  name: string;
  emptyDir?: { sizeLimit?: string };
  projected?: {
    sources: {
      serviceAccountToken?: { path: string; expirationSeconds?: number; audience?: string };
      configMap?: { name: string; items: { key: string; path: string }[] };
      downwardAPI?: { items: { path: string; fieldRef: { fieldPath: string } }[] };
    }[];
  };
  secret?: unknown;
  hostPath?: unknown;
}

export interface LabelSelector {
  matchLabels: Record<string, string>;
}

export interface AffinityTerm {
  topologyKey: string;
  labelSelector: LabelSelector;
}

export interface PodSpec {
  serviceAccountName: string;
  automountServiceAccountToken?: boolean;
  securityContext: SecurityContext;
  containers: Container[];
  volumes: Volume[];
  hostNetwork?: boolean;
  hostPID?: boolean;
  nodeSelector?: Record<string, string>;
  tolerations?: unknown[];
  priorityClassName?: string;
  affinity?: {
    podAntiAffinity?: {
      requiredDuringSchedulingIgnoredDuringExecution?: AffinityTerm[];
      preferredDuringSchedulingIgnoredDuringExecution?: {
        weight: number;
        podAffinityTerm: AffinityTerm;
      }[];
    };
    nodeAffinity?: unknown;
  };
}

export interface Deployment extends K8sObject {
  spec: {
    replicas?: number;
    selector: LabelSelector;
    strategy: { type: string; rollingUpdate: { maxSurge: number; maxUnavailable: number } };
    template: {
      metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
      spec: PodSpec;
    };
  };
}

export interface Service extends K8sObject {
  spec: {
    type: string;
    selector: Record<string, string>;
    ports: { name: string; port: number; targetPort: string | number; protocol: string }[];
  };
}

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

export interface RbacRole extends K8sObject {
  rules: PolicyRule[];
}

export interface RbacBinding extends K8sObject {
  roleRef: { apiGroup: string; kind: string; name: string };
  subjects: { kind: string; name: string; namespace: string }[];
}

export interface Hpa extends K8sObject {
  spec: {
    scaleTargetRef: { apiVersion: string; kind: string; name: string };
    minReplicas: number;
    maxReplicas: number;
    metrics: {
      type: string;
      resource: { name: string; target: { type: string; averageUtilization: number } };
    }[];
  };
}

export interface ServiceMonitor extends K8sObject {
  spec: {
    selector: LabelSelector;
    namespaceSelector: { matchNames: string[] };
    endpoints: { port: string; path: string; interval: string; scrapeTimeout: string }[];
  };
}

export interface Pdb extends K8sObject {
  spec: { minAvailable: number | string; selector: LabelSelector };
}
