/**
 * Istio's value matching, as istiod translates it into Envoy matchers
 * (pilot/pkg/security/authz/matcher: StringMatcherWithPrefix, HeaderMatcher, HostMatcher,
 * PathTemplateMatcher). Every string field of a rule supports exact `abc`, prefix `abc*`,
 * suffix `*abc` and presence `*` (AuthorizationPolicy reference, "Rule").
 */

/**
 * StringMatcher: `*` is the regex `.+` (a non-empty value), `*x` a suffix, `x*` a prefix,
 * anything else exact. A missing value never matches.
 */
export function matchString(pattern: string, value: string | null | undefined): boolean {
  if (value === null || value === undefined) return false;
  if (pattern === '*') return value.length > 0;
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  return value === pattern;
}

/** HeaderMatcher: `*` only asks that the header is present (an empty value counts). */
export function matchHeader(pattern: string, value: string | null | undefined): boolean {
  if (value === null || value === undefined) return false;
  if (pattern === '*') return true;
  return matchString(pattern, value);
}

/** HostMatcher: like HeaderMatcher on `:authority`, but case-insensitive. */
export function matchHost(pattern: string, host: string | null | undefined): boolean {
  if (host === null || host === undefined) return false;
  if (pattern === '*') return true;
  return matchString(pattern.toLowerCase(), host.toLowerCase());
}

/** How many compiled regexes each cache below keeps. */
export const REGEX_CACHE_LIMIT = 1024;

/**
 * Compiled regexes by pattern. Patterns come from policies, which change over a server's life
 * (and from every `policy check` input), so the cache is bounded: past REGEX_CACHE_LIMIT the
 * least recently used goes. A Map iterates in insertion order, so a hit is moved to the end.
 */
class RegexCache {
  private readonly map = new Map<string, RegExp>();

  get size(): number {
    return this.map.size;
  }

  get(pattern: string, compile: (pattern: string) => RegExp): RegExp {
    let re = this.map.get(pattern);
    if (re) {
      this.map.delete(pattern);
    } else {
      re = compile(pattern);
      if (this.map.size >= REGEX_CACHE_LIMIT) {
        const oldest = this.map.keys().next();
        if (!oldest.done) this.map.delete(oldest.value);
      }
    }
    this.map.set(pattern, re);
    return re;
  }
}

const PATH_TEMPLATE_ONE = '{*}';
const PATH_TEMPLATE_ANY = '{**}';

function isPathTemplate(pattern: string): boolean {
  return pattern.includes(PATH_TEMPLATE_ONE) || pattern.includes(PATH_TEMPLATE_ANY);
}

// Envoy's uri_template literal characters (RFC 3986 pchar without '*' and '/').
const PCHAR = "a-zA-Z0-9\\-._~%!$&'()+,;:@=";
const templateCache = new RegexCache();

/**
 * A path template: `{*}` is one non-empty path segment, `{**}` zero or more characters
 * including `/` (Envoy uri_template `*` and `**`, which istiod generates from `{*}` and `{**}`).
 */
function templateRegex(pattern: string): RegExp {
  return templateCache.get(pattern, () => {
    let source = '';
    for (let i = 0; i < pattern.length;) {
      if (pattern.startsWith(PATH_TEMPLATE_ANY, i)) {
        source += `[${PCHAR}/]*`;
        i += PATH_TEMPLATE_ANY.length;
      } else if (pattern.startsWith(PATH_TEMPLATE_ONE, i)) {
        source += `[${PCHAR}]+`;
        i += PATH_TEMPLATE_ONE.length;
      } else {
        source += (pattern[i] as string).replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
        i += 1;
      }
    }
    return new RegExp(`^${source}$`);
  });
}

/**
 * Operation.paths: Envoy's RBAC url_path matcher, given the normalized path without its query
 * string and fragment (path-normalization.ts). Templates use the uri_template matcher; the
 * rest use StringMatcher. The template's regex is looked up once, here, not on every request.
 */
export function pathMatcher(pattern: string): (urlPath: string | null | undefined) => boolean {
  if (!isPathTemplate(pattern)) {
    return (path) => path !== null && path !== undefined && matchString(pattern, path);
  }
  const re = templateRegex(pattern);
  return (path) => path !== null && path !== undefined && re.test(path);
}

const SPIFFE = 'spiffe://';

/**
 * Source.principals / `source.principal`: matched against the peer certificate's URI SAN
 * `spiffe://<td>/ns/<ns>/sa/<sa>` with the policy value prefixed by `spiffe://`; a suffix
 * pattern `*x` becomes the regex `spiffe://.*x` (StringMatcherWithPrefix).
 */
export function matchPrincipal(pattern: string, principal: string | null): boolean {
  if (principal === null) return false;
  const uri = SPIFFE + principal;
  if (pattern === '*') return uri.length > 0;
  if (pattern.startsWith('*')) return uri.endsWith(pattern.slice(1)) && uri.length >= SPIFFE.length;
  if (pattern.endsWith('*')) return uri.startsWith(SPIFFE + pattern.slice(0, -1));
  return uri === SPIFFE + pattern;
}

const namespaceCache = new RegexCache();

/**
 * Source.namespaces / `source.namespace`: the regex `.*\/ns/<value>/.*` over the peer's SPIFFE
 * URI, `*` in the value becoming `.*` (srcNamespaceGenerator). The namespace comes from the
 * peer identity, never from anything the client says. The regex is looked up once, here.
 */
export function namespaceMatcher(pattern: string): (principal: string | null) => boolean {
  const re = namespaceCache.get(pattern, () => {
    const v = pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\/-]/g, '\\$&'))
      .join('.*');
    return new RegExp(`^.*/ns/${v}/.*$`);
  });
  return (principal) => principal !== null && re.test(SPIFFE + principal);
}

/** For tests: how many compiled regexes the caches hold (path templates, namespaces). */
export function cachedRegexCounts(): { templates: number; namespaces: number } {
  return { templates: templateCache.size, namespaces: namespaceCache.size };
}

/**
 * Source.requestPrincipals / `request.auth.principal`: `<iss>/<sub>` split at the last `/`
 * and matched against the token's iss and sub claims (requestPrincipalGenerator).
 */
export function matchRequestPrincipal(
  pattern: string,
  iss: string | null,
  sub: string | null,
): boolean {
  if (iss === null || sub === null) return false;
  const any = (s: string): boolean => s.length > 0;
  const idx = pattern.lastIndexOf('/');
  const found = idx >= 0;
  const pIss = found ? pattern.slice(0, idx) : pattern;
  const pSub = found ? pattern.slice(idx + 1) : '';
  if (pattern === '*') return any(iss) && any(sub);
  if (pattern.startsWith('*')) {
    if (found) return (pIss === '*' ? any(iss) : iss.endsWith(pIss.slice(1))) && sub === pSub;
    return any(iss) && sub.endsWith(pattern.slice(1));
  }
  if (pattern.endsWith('*')) {
    if (found) return iss === pIss && (pSub === '*' ? any(sub) : sub.startsWith(pSub.slice(0, -1)));
    return iss.startsWith(pattern.slice(0, -1)) && any(sub);
  }
  return iss === pIss && sub === pSub;
}
