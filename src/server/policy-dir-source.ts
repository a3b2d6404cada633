import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { PeriodicTask, type Clock } from '../clock.js';
import { CastellanError } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { PolicyCompiler } from '../policy/compiler.js';
import {
  NOTHING_APPLIED,
  syncCompiler,
  type AppliedInputs,
  type SyncResult,
} from '../policy/compiler-sync.js';
import type { Diagnostic } from '../policy/diagnostic.js';
import { parseManifestText } from '../policy/documents.js';
import { isRecord, parseResources, type ManifestDocument } from '../policy/parse-resources.js';
import { workloadFromPod } from '../policy/pod-workload.js';
import { workloadKey, parseWorkload, type Workload } from '../policy/workload.js';

const MANIFEST = /\.(ya?ml|json)$/i;

/** How often the folder is re-read (a mounted ConfigMap changes by a symlink swap). */
export const POLICY_DIR_POLL_MS = 1000;

/**
 * `serve --policy-dir DIR`: the policy inputs of local mode, read from a folder of Kubernetes
 * manifests (recursively, *.yaml, *.yml, *.json, as `castellan policy` reads them):
 * PeerAuthentication and AuthorizationPolicy (security.istio.io v1/v1beta1), Pods (the
 * workloads), Namespaces (a deleted namespace takes its objects along, as the folder then no
 * longer holds them), and documents `{workloads: [...]}` in the format of
 * `castellan policy bundle --workload`. The folder is polled; when its content changes it is
 * re-read and only the objects that changed reach the compiler. A file that does not parse is
 * logged and its previous content kept, so a half-written edit never drops policies.
 */
export class PolicyDirSource {
  private applied: AppliedInputs = NOTHING_APPLIED;
  private lastPrint: string | undefined;
  /** The last good documents of each file, kept while a later version of it is broken. */
  private readonly goodDocuments = new Map<string, { text: string; docs: ManifestDocument[] }>();
  private readonly poll: PeriodicTask;
  private busy = false;
  private readonly log: Logger;
  /** Diagnostics of the last read (schema errors, unreadable files). */
  diagnostics: readonly Diagnostic[] = [];

  constructor(
    private readonly options: {
      readonly dir: string;
      readonly compiler: PolicyCompiler;
      readonly clock: Clock;
      readonly pollMs?: number;
      readonly logger?: Logger;
      /** Called after each re-read that changed something. */
      readonly onSync?: (result: SyncResult) => void;
    },
  ) {
    this.log = options.logger ?? silentLogger;
    this.poll = new PeriodicTask({
      clock: options.clock,
      intervalMs: options.pollMs ?? POLICY_DIR_POLL_MS,
      run: async () => {
        await this.check();
      },
      // check() logs and swallows its own failures; anything else is a bug worth a line.
      onError: (e) =>
        this.log.error({ dir: options.dir, err: String(e) }, 'could not read the policy folder'),
    });
  }

  /** Reads the folder once (throws when it is missing), then follows it. */
  async start(): Promise<SyncResult> {
    let st;
    try {
      st = await stat(this.options.dir);
    } catch (e) {
      throw new CastellanError('invalid-argument', 'no such folder', {
        subject: this.options.dir,
        cause: e,
      });
    }
    if (!st.isDirectory()) {
      throw new CastellanError('invalid-argument', 'is not a folder', {
        subject: this.options.dir,
      });
    }
    const first = await this.check();
    this.poll.start();
    return first ?? { applied: this.applied, changes: 0, recomputed: 0 };
  }

  /** No poll after this; resolves when a read under way has finished. */
  stop(): Promise<void> {
    return this.poll.stop();
  }

  /** Re-reads the folder; applies the differences. Undefined when nothing changed. */
  async check(): Promise<SyncResult | undefined> {
    if (this.busy) return undefined;
    this.busy = true;
    try {
      const files = await manifestFiles(this.options.dir);
      const texts = new Map<string, string>();
      for (const f of files) {
        try {
          texts.set(f, await readFile(f, 'utf8'));
        } catch (e) {
          // Gone between listing and reading: the next poll sees the new state.
          this.log.debug({ file: f, err: String(e) }, 'policy file vanished while reading');
        }
      }
      const print = createHash('sha256')
        .update(JSON.stringify([...texts.entries()]))
        .digest('hex');
      if (print === this.lastPrint) return undefined;
      const result = this.apply(texts);
      // Recorded only once applied: content whose apply threw is tried again on the next poll.
      this.lastPrint = print;
      this.options.onSync?.(result);
      return result;
    } catch (e) {
      this.log.error({ dir: this.options.dir, err: String(e) }, 'could not read the policy folder');
      return undefined;
    } finally {
      this.busy = false;
    }
  }

  private apply(texts: ReadonlyMap<string, string>): SyncResult {
    const documents: ManifestDocument[] = [];
    for (const k of [...this.goodDocuments.keys()]) if (!texts.has(k)) this.goodDocuments.delete(k);
    for (const [file, text] of texts) {
      const good = this.goodDocuments.get(file);
      if (good?.text === text) {
        documents.push(...good.docs);
        continue;
      }
      try {
        const docs = parseManifestText(text, file);
        this.goodDocuments.set(file, { text, docs });
        documents.push(...docs);
      } catch (e) {
        this.log.error(
          { file, err: e instanceof Error ? e.message : String(e) },
          'policy file refused; keeping its previous content',
        );
        if (good) documents.push(...good.docs);
      }
    }
    const { resources, diagnostics } = parseResources(documents);
    const workloads = new Map<string, Workload>();
    for (const doc of documents) {
      for (const w of workloadsOf(doc, this.log)) workloads.set(workloadKey(w), w);
    }
    this.diagnostics = diagnostics;
    for (const d of diagnostics) {
      this.log.warn({ resource: d.resource, field: d.field }, `policy: ${d.message}`);
    }
    const result = syncCompiler(this.options.compiler, this.applied, {
      resources,
      workloads: [...workloads.values()],
    });
    this.applied = result.applied;
    this.log.info(
      {
        dir: this.options.dir,
        policies: result.applied.resources.size,
        workloads: result.applied.workloads.size,
        changes: result.changes,
        recomputed: result.recomputed,
      },
      'policy folder applied',
    );
    return result;
  }
}

/** Pods (kind Pod, v1; `List`s unpacked) and `{workloads: [...]}` documents. */
function workloadsOf(doc: ManifestDocument, log: Logger): Workload[] {
  const o = doc.object;
  if (!isRecord(o)) return [];
  if (o['kind'] === 'List' && Array.isArray(o['items'])) {
    return o['items'].flatMap((item, i) =>
      workloadsOf({ origin: `${doc.origin}.items[${i}]`, object: item }, log),
    );
  }
  if (o['kind'] === 'Pod' && o['apiVersion'] === 'v1') {
    const w = workloadFromPod(o);
    return w ? [w] : [];
  }
  if (o['kind'] === undefined && Array.isArray(o['workloads'])) {
    const out: Workload[] = [];
    o['workloads'].forEach((raw, i) => {
      try {
        out.push(parseWorkload(raw, `${doc.origin}.workloads[${i}]`));
      } catch (e) {
        log.error({ err: e instanceof Error ? e.message : String(e) }, 'workload refused');
      }
    });
    return out;
  }
  return [];
}

async function manifestFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    // Kubernetes' ConfigMap mounts keep the real files under ..data and timestamped ..folders.
    if (e.name.startsWith('..')) continue;
    const p = join(dir, e.name);
    let isDir = e.isDirectory();
    if (e.isSymbolicLink()) isDir = (await stat(p).catch(() => null))?.isDirectory() ?? false;
    if (isDir) out.push(...(await manifestFiles(p)));
    else if (MANIFEST.test(e.name)) out.push(p);
  }
  return out;
}
