import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import { CastellanError } from '../errors.js';

/** The folder holding protos/*.proto, found from this file whether run from src/ or dist/src/. */
export function protosDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'protos');
    if (existsSync(join(candidate, 'istioca.proto'))) return candidate;
    dir = dirname(dir);
  }
  throw new CastellanError(
    'internal',
    'protos/istioca.proto not found next to the installed package',
  );
}

/** Loads a proto from protos/ with the options every Castellan surface uses. */
export function loadProto(file: string): protoLoader.PackageDefinition {
  return protoLoader.loadSync(join(protosDir(), file), {
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [protosDir()],
  });
}
