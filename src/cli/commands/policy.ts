import { lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { CastellanError } from '../../errors.js';
import { serializeBundle } from '../../policy/policy-bundle.js';
import { canonicalJson } from '../../policy/canonical-json.js';
import { decisionJson, formatDecision } from '../../policy/decision.js';
import { diagnostic, sortDiagnostics, type Diagnostic } from '../../policy/diagnostic.js';
import { parseManifestText, parseSingleDocument } from '../../policy/documents.js';
import { bundleForWorkload, checkRequest, lintResources } from '../../policy/evaluate.js';
import { InputFields } from '../../policy/input-fields.js';
import { parseMesh } from '../../policy/mesh.js';
import { parseResources, type ManifestDocument } from '../../policy/parse-resources.js';
import { parseRequest } from '../../policy/request.js';
import { resourceLabel, type SecurityResource } from '../../policy/resource.js';
import { parseWorkload } from '../../policy/workload.js';
import { collect } from '../options.js';

const MANIFEST = /\.(ya?ml|json)$/i;

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new CastellanError(
      'invalid-argument',
      `cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      {
        subject: path,
        cause: e,
      },
    );
  }
}

/** Every manifest file under PATH (a file, or a folder walked recursively), in sorted order. */
function manifestFiles(path: string): string[] {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new CastellanError('invalid-argument', 'no such file or folder', {
      subject: path,
      cause: e,
    });
  }
  if (!st.isDirectory()) return [path];
  return (
    readdirSync(path)
      .sort()
      // A mounted ConfigMap keeps its real files under ..data and timestamped ..folders too.
      .filter((name) => !name.startsWith('..'))
      .flatMap((name) => {
        const p = join(path, name);
        let isDir: boolean;
        try {
          isDir = statSync(p).isDirectory();
        } catch (e) {
          // A link to nowhere. One named like a manifest is refused, as an unreadable manifest
          // is (policies silently missing would change decisions); others are ignored as any
          // non-manifest file is.
          if (!MANIFEST.test(name)) return [];
          const broken = lstatSync(p, { throwIfNoEntry: false })?.isSymbolicLink() === true;
          throw new CastellanError(
            'invalid-argument',
            broken
              ? `cannot read: broken symbolic link to ${readlinkSync(p)}`
              : `cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
            { subject: p, cause: e },
          );
        }
        return isDir ? manifestFiles(p) : MANIFEST.test(name) ? [p] : [];
      })
  );
}

interface LoadedPolicies {
  readonly resources: SecurityResource[];
  readonly diagnostics: Diagnostic[];
}

function loadPolicies(paths: readonly string[]): LoadedPolicies {
  const documents: ManifestDocument[] = [];
  for (const p of paths)
    for (const f of manifestFiles(p)) documents.push(...parseManifestText(readText(f), f));
  const { resources, diagnostics } = parseResources(documents);
  // The same object twice: like `kubectl apply` of both, the last one stays.
  const byKey = new Map<string, SecurityResource>();
  for (const r of resources) {
    const key = resourceLabel(r);
    const prev = byKey.get(key);
    if (prev) {
      diagnostics.push(
        diagnostic(
          'warning',
          key,
          'metadata.name',
          `defined twice (${prev.meta.origin} and ${r.meta.origin}): the last one is used`,
        ),
      );
    }
    byKey.set(key, r);
  }
  return { resources: [...byKey.values()], diagnostics };
}

function print(text: string): void {
  process.stdout.write(text);
}

function formatDiagnostics(list: readonly Diagnostic[]): string {
  if (list.length === 0) return 'no problems found\n';
  return list.map((d) => `${d.severity}: ${d.resource}: ${d.field}: ${d.message}\n`).join('');
}

/**
 * Notes for `check` about objects left out because Kubernetes would refuse them, when they
 * are in the workload's namespace or the root namespace (where a policy for it would live).
 */
function leftOutNotes(diagnostics: readonly Diagnostic[], namespaces: readonly string[]): string[] {
  return diagnostics
    .filter((d) => {
      if (d.severity !== 'error') return false;
      const ns = /^\w+ ([^/\s]+)\//.exec(d.resource)?.[1];
      return ns !== undefined && namespaces.includes(ns);
    })
    .map((d) => `${d.resource} is left out: ${d.field}: ${d.message}`);
}

export function registerPolicyCommands(program: Command): void {
  const policy = program
    .command('policy')
    .description(
      'Evaluate Istio PeerAuthentication and AuthorizationPolicy resources, and explain decisions',
    );

  policy
    .command('check')
    .description('Decide one request as the workload sidecar would, and explain why')
    .requiredOption(
      '--policies <path>',
      'a YAML file or a folder of manifests (repeatable)',
      collect,
    )
    .requiredOption(
      '--input <file>',
      'the request description (YAML or JSON: mesh, workload, request)',
    )
    .addOption(
      new Option('--output <format>', 'output format').choices(['text', 'json']).default('text'),
    )
    .action((opts: { policies: string[]; input: string; output: 'text' | 'json' }) => {
      const loaded = loadPolicies(opts.policies);
      const input = InputFields.of(
        parseSingleDocument(readText(opts.input), opts.input),
        opts.input,
      );
      const mesh = parseMesh(input.raw('mesh'));
      const workload = parseWorkload(input.raw('workload'));
      const request = parseRequest(input.raw('request'), 'request', workload.namespace);
      const checked = checkRequest(loaded.resources, mesh, workload, request).decision;
      const leftOut = leftOutNotes(loaded.diagnostics, [workload.namespace, mesh.rootNamespace]);
      const decision = leftOut.length
        ? { ...checked, notes: [...checked.notes, ...leftOut] }
        : checked;
      print(
        opts.output === 'json'
          ? `${canonicalJson(decisionJson(decision), 2)}\n`
          : formatDecision(decision),
      );
    });

  policy
    .command('bundle')
    .description("Print a workload's policy bundle (deterministic JSON with a content hash)")
    .requiredOption(
      '--policies <path>',
      'a YAML file or a folder of manifests (repeatable)',
      collect,
    )
    .requiredOption('--workload <file>', 'the workload (YAML or JSON; optionally {mesh, workload})')
    .action((opts: { policies: string[]; workload: string }) => {
      const loaded = loadPolicies(opts.policies);
      const raw = parseSingleDocument(readText(opts.workload), opts.workload);
      const f = InputFields.of(raw, opts.workload);
      const wrapped = f.has('workload');
      const mesh = parseMesh(wrapped ? f.raw('mesh') : undefined);
      const workload = wrapped ? parseWorkload(f.raw('workload')) : parseWorkload(raw, 'workload');
      print(serializeBundle(bundleForWorkload(loaded.resources, mesh, workload)));
    });

  policy
    .command('lint')
    .description(
      'Print what Istio would reject, skip or ignore in the policies; exit 1 when there is an error',
    )
    .requiredOption(
      '--policies <path>',
      'a YAML file or a folder of manifests (repeatable)',
      collect,
    )
    .option(
      '--mesh <file>',
      'MeshConfig settings (rootNamespace, trustDomain, ...) as YAML or JSON',
    )
    .addOption(
      new Option('--output <format>', 'output format').choices(['text', 'json']).default('text'),
    )
    .action((opts: { policies: string[]; mesh?: string; output: 'text' | 'json' }) => {
      const loaded = loadPolicies(opts.policies);
      const meshRaw = opts.mesh ? parseSingleDocument(readText(opts.mesh), opts.mesh) : undefined;
      const mesh = parseMesh(meshRaw, opts.mesh ?? 'mesh');
      const all = sortDiagnostics([
        ...loaded.diagnostics,
        ...lintResources(loaded.resources, mesh),
      ]);
      print(opts.output === 'json' ? `${canonicalJson(all, 2)}\n` : formatDiagnostics(all));
      // An error is something Kubernetes, Istio's webhook or istiod refuses: fail a CI gate.
      if (all.some((d) => d.severity === 'error')) process.exitCode = 1;
    });
}
