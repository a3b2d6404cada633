import type { Command } from 'commander';

// Placeholder until the owning issue lands: registers nothing.
export function registerAgentCommand(_program: Command): void {}
