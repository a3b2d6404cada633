/**
 * Trust-domain aliases, as istiod applies them when it builds a rule
 * (pilot/pkg/security/trustdomain/bundle.go, called from authz/model Model.MigrateTrustDomain).
 * `trustDomains` is the local trust domain first, then its aliases (trustdomain.NewBundle).
 */

/**
 * Bundle.ReplaceTrustDomainAliases, for `principals`, `notPrincipals` and `source.principal`:
 * a principal `<td>/ns/<ns>/sa/<sa>` whose trust domain matches one of the bundle's (in either
 * direction, with `*` prefix/suffix patterns: util.go stringMatch) or is `cluster.local` becomes
 * one principal per trust domain of the bundle; a bundle trust domain that the principal's `*x`
 * pattern covers keeps the principal as written. Anything else (not five segments, a `*` trust
 * domain, a foreign trust domain) is kept as it is.
 */
export function expandPrincipalAliases(
  principals: readonly string[],
  trustDomains: readonly string[],
): string[] {
  const out: string[] = [];
  for (const principal of principals) {
    const parts = principal.split('/');
    // isTrustDomainBeingEnforced: not <td>/ns/<ns>/sa/<sa>, or a bare `*` trust domain.
    if (parts.length !== 5 || parts[0] === '*') {
      out.push(principal);
      continue;
    }
    const td = parts[0] as string;
    if (!trustDomains.some((t) => eitherMatches(td, t)) && td !== 'cluster.local') {
      out.push(principal);
      continue;
    }
    const expanded: string[] = [];
    for (const t of trustDomains) {
      const p = suffixMatch(t, td) ? principal : [t, ...parts.slice(1)].join('/');
      if (!expanded.includes(p)) expanded.push(p);
    }
    out.push(...expanded);
  }
  return out;
}

/**
 * Bundle.ExpandTrustDomainAliases, for `trustDomains`, `notTrustDomains` and
 * `source.trustDomain`: a value equal to one of the bundle's trust domains becomes all of them
 * (exact equality only; unlike principals, neither patterns nor `cluster.local` expand), then
 * duplicates are dropped keeping the first.
 */
export function expandTrustDomainValues(
  values: readonly string[],
  trustDomains: readonly string[],
): string[] {
  const out: string[] = [];
  for (const v of values) {
    for (const x of trustDomains.includes(v) ? trustDomains : [v]) {
      if (!out.includes(x)) out.push(x);
    }
  }
  return out;
}

/** util.go stringMatch for one pair: equal, `*`, or a prefix/suffix pattern on either side. */
function eitherMatches(a: string, b: string): boolean {
  return (
    a === b ||
    b === '*' ||
    prefixMatch(a, b) ||
    prefixMatch(b, a) ||
    suffixMatch(a, b) ||
    suffixMatch(b, a)
  );
}

function prefixMatch(a: string, pattern: string): boolean {
  return pattern.endsWith('*') && a.startsWith(pattern.slice(0, -1));
}

function suffixMatch(a: string, pattern: string): boolean {
  return pattern.startsWith('*') && a.endsWith(pattern.slice(1));
}
