import { statusErrors } from './status.js';

/** A JSON value as patches see it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(v: unknown): v is { [key: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * RFC 7386 JSON merge patch: objects merge key by key, `null` deletes, anything else replaces.
 * Also used for strategic-merge patches: for the simple cases (maps such as `data`, `labels`,
 * `annotations`, scalar fields) the two agree; lists are replaced, not merged by key.
 */
export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: { [key: string]: Json } = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$')) continue; // strategic-merge directives ($patch, $retainKeys): ignored
    // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- a JSON object is a dictionary: null removes the key (RFC 7386)
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k] ?? null, v);
  }
  return out;
}

interface JsonPatchOp {
  op: string;
  path: string;
  value?: Json;
  from?: string;
}

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw statusErrors.badRequest(`invalid JSON pointer "${path}"`);
  return path
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** RFC 6902 JSON patch: add, remove, replace, test, copy, move. */
export function jsonPatch(target: Json, ops: unknown): Json {
  if (!Array.isArray(ops)) throw statusErrors.badRequest('a JSON patch must be an array');
  let doc = structuredClone(target);
  const get = (parts: string[]): Json | undefined => {
    let cur: Json | undefined = doc;
    for (const p of parts) {
      if (Array.isArray(cur)) cur = cur[Number(p)];
      else if (isObject(cur)) cur = cur[p];
      else return undefined;
    }
    return cur;
  };
  const parentOf = (parts: string[]): { parent: Json | undefined; key: string } => ({
    parent: get(parts.slice(0, -1)),
    key: parts[parts.length - 1] as string,
  });
  const put = (parts: string[], value: Json, insert: boolean): void => {
    if (parts.length === 0) {
      doc = value;
      return;
    }
    const { parent, key } = parentOf(parts);
    if (Array.isArray(parent)) {
      const i = key === '-' ? parent.length : Number(key);
      if (!Number.isInteger(i) || i < 0 || i > parent.length) {
        throw statusErrors.badRequest(`JSON patch: index ${key} out of range`);
      }
      if (insert) parent.splice(i, 0, value);
      else parent[i] = value;
    } else if (isObject(parent)) {
      if (!insert && !(key in parent)) {
        throw statusErrors.badRequest(`JSON patch: replace of missing key "${key}"`);
      }
      parent[key] = value;
    } else {
      throw statusErrors.badRequest(`JSON patch: no parent for "/${parts.join('/')}"`);
    }
  };
  const remove = (parts: string[]): void => {
    const { parent, key } = parentOf(parts);
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- a JSON object is a dictionary: remove takes the key out (RFC 6902)
    else if (isObject(parent) && key in parent) delete parent[key];
    else throw statusErrors.badRequest(`JSON patch: remove of missing "/${parts.join('/')}"`);
  };
  for (const raw of ops as JsonPatchOp[]) {
    const parts = pointer(raw.path);
    switch (raw.op) {
      case 'add':
        put(parts, structuredClone(raw.value ?? null), true);
        break;
      case 'replace':
        put(parts, structuredClone(raw.value ?? null), false);
        break;
      case 'remove':
        remove(parts);
        break;
      case 'test':
        if (JSON.stringify(get(parts)) !== JSON.stringify(raw.value)) {
          throw statusErrors.invalid(
            { group: '', resource: 'patch' },
            `test operation failed at ${raw.path}`,
          );
        }
        break;
      case 'copy':
      case 'move': {
        const from = pointer(raw.from ?? '');
        const v = structuredClone(get(from) ?? null);
        if (raw.op === 'move') remove(from);
        put(parts, v, true);
        break;
      }
      default:
        throw statusErrors.badRequest(`JSON patch: unknown op "${raw.op}"`);
    }
  }
  return doc;
}
