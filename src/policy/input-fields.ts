import { CastellanError } from '../errors.js';

/**
 * Reads a plain object (parsed YAML or JSON) field by field and refuses bad input with a
 * CastellanError of kind `invalid-argument` whose subject names the field, e.g.
 * `request.http.method`.
 */
export class InputFields {
  constructor(
    private readonly obj: Record<string, unknown>,
    readonly path: string,
  ) {}

  static of(value: unknown, path: string, required?: true): InputFields;
  static of(value: unknown, path: string, required: boolean): InputFields | null;
  static of(value: unknown, path: string, required = true): InputFields | null {
    if (value === undefined || value === null) {
      if (required) throw fieldError(path, 'is required');
      return null;
    }
    if (typeof value !== 'object' || Array.isArray(value) || value instanceof Date) {
      throw fieldError(path, 'must be an object');
    }
    return new InputFields(value as Record<string, unknown>, path);
  }

  at(key: string): string {
    return `${this.path}.${key}`;
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  raw(key: string): unknown {
    return this.obj[key];
  }

  object(key: string, required = false): InputFields | null {
    return InputFields.of(this.obj[key], this.at(key), required);
  }

  string(key: string): string | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw fieldError(this.at(key), 'must be a string');
    return v;
  }

  requiredString(key: string): string {
    const v = this.string(key);
    if (v === undefined || v === '') throw fieldError(this.at(key), 'is required');
    return v;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback?: T): T {
    const v = this.obj[key];
    if ((v === undefined || v === null) && fallback !== undefined) return fallback;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      throw fieldError(this.at(key), `must be one of ${allowed.join(', ')}`);
    }
    return v as T;
  }

  port(key: string, required: boolean): number | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (required) throw fieldError(this.at(key), 'is required');
      return undefined;
    }
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) {
      throw fieldError(this.at(key), 'must be a port number (1-65535)');
    }
    return n;
  }

  boolean(key: string): boolean | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') throw fieldError(this.at(key), 'must be true or false');
    return v;
  }

  stringList(key: string): string[] {
    const v = this.obj[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
      throw fieldError(this.at(key), 'must be a list of strings');
    }
    return v as string[];
  }

  stringMap(key: string): Record<string, string> {
    const v = this.obj[key];
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v)) {
      throw fieldError(this.at(key), 'must be a map of strings');
    }
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (typeof x === 'number' || typeof x === 'boolean') out[k] = String(x);
      else if (typeof x === 'string') out[k] = x;
      else throw fieldError(`${this.at(key)}.${k}`, 'must be a string');
    }
    return out;
  }

  list(key: string): unknown[] {
    const v = this.obj[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) throw fieldError(this.at(key), 'must be a list');
    return v;
  }
}

export function fieldError(path: string, message: string): CastellanError {
  return new CastellanError('invalid-argument', message, { subject: path });
}
