/**
 * Trust-domain aliases for principals, as istiod applies them to `principals`, `notPrincipals`
 * and `source.principal` (pilot/pkg/security/trustdomain Bundle.ReplaceTrustDomainAliases):
 * a principal naming the local trust domain, one of its aliases, or `cluster.local` is expanded
 * to one principal per trust domain; anything else is kept as written.
 */
export function expandTrustDomainAliases(
  principals: readonly string[],
  trustDomains: readonly string[],
): string[] {
  const out: string[] = [];
  for (const principal of principals) {
    const parts = principal.split('/');
    // Not <td>/ns/<ns>/sa/<sa>, or a `*` trust domain: the trust domain is not being checked.
    if (parts.length !== 5 || parts[0] === '*') {
      out.push(principal);
      continue;
    }
    const td = parts[0] as string;
    if (!trustDomains.some((t) => tdMatches(t, td)) && td !== 'cluster.local') {
      out.push(principal);
      continue;
    }
    const expanded: string[] = [];
    for (const t of trustDomains) {
      const p = suffixPattern(t, td) ? principal : [t, ...parts.slice(1)].join('/');
      if (!expanded.includes(p)) expanded.push(p);
    }
    out.push(...expanded);
  }
  return out;
}

/** A principal's trust domain `*x` stands for every trust domain ending in `x`. */
function suffixPattern(trustDomain: string, fromPrincipal: string): boolean {
  return fromPrincipal.startsWith('*') && trustDomain.endsWith(fromPrincipal.slice(1));
}

function tdMatches(trustDomain: string, fromPrincipal: string): boolean {
  return trustDomain === fromPrincipal || suffixPattern(trustDomain, fromPrincipal);
}
