import { parseAllDocuments } from 'yaml';
import { CastellanError } from '../errors.js';
import type { ManifestDocument } from './parse-resources.js';

/**
 * Splits the text of a manifest file (multi-document YAML, or JSON, which is YAML) into
 * documents. A syntax error is an unusable input: a CastellanError naming the file and line.
 */
export function parseManifestText(text: string, origin: string): ManifestDocument[] {
  const docs = parseAllDocuments(text, { prettyErrors: true });
  const out: ManifestDocument[] = [];
  docs.forEach((doc, i) => {
    const [e] = doc.errors;
    if (e) {
      throw new CastellanError('malformed', `not valid YAML: ${e.message.split('\n')[0]}`, {
        subject: origin,
        cause: e,
      });
    }
    const object: unknown = doc.toJS({ maxAliasCount: 100 });
    if (object !== null && object !== undefined) out.push({ origin: `${origin}#${i}`, object });
  });
  return out;
}

/** A single YAML/JSON document (the `check` input, a workload file). */
export function parseSingleDocument(text: string, origin: string): unknown {
  const docs = parseManifestText(text, origin);
  const doc = docs[0];
  if (docs.length !== 1 || doc === undefined) {
    throw new CastellanError(
      'malformed',
      `expected exactly one YAML/JSON document, found ${docs.length}`,
      {
        subject: origin,
      },
    );
  }
  return doc.object;
}
