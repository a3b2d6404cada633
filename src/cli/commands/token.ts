import type { Command } from 'commander';

// Placeholder until the owning issue lands: registers nothing.
export function registerTokenCommand(_program: Command): void {}
