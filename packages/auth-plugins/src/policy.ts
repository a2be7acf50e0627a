import { type Identity, identityName } from './plugin.js';

export type Action = 'pull' | 'push';

export interface PolicyRule {
  /** Globs over `<plugin>:<subject>`; `*` any run without `/`, `**` any run. */
  readonly identities: readonly string[];
  /** Globs over client-facing repository names. */
  readonly repositories: readonly string[];
  readonly actions: readonly (Action | '*')[];
  /** Globs; when given, the identity must be in at least one matching group. */
  readonly groups?: readonly string[];
  /**
   * Claim name -> glob or globs; when given, every named claim must be present and match (a
   * GitHub Actions token's `repository_owner: acme`). Arrays in the claim match if any element does.
   */
  readonly claims?: Readonly<Record<string, string | readonly string[]>>;
}

/** Who may do what: the union of every rule that matches; nothing matching means deny. */
export interface Policy {
  /** The subset of `requested` actions this identity may take on `repository`. */
  grant(identity: Identity | undefined, repository: string, requested: readonly string[]): Action[];
}

/**
 * Compiles policy rules. Globs are case-sensitive and match whole strings: `*` matches any run
 * of characters except `/`, `**` any run including `/`. `identities: ["anonymous"]` matches
 * requests without a login. No rule matching means deny.
 *
 * @throws TypeError naming the rule and field.
 */
export function createPolicy(rules: readonly PolicyRule[]): Policy {
  const compiled = rules.map((rule, i) => {
    const where = `policy[${i}]`;
    for (const field of ['identities', 'repositories', 'actions'] as const) {
      const list = rule[field];
      if (
        !Array.isArray(list) ||
        list.length === 0 ||
        list.some((v) => typeof v !== 'string' || v === '')
      ) {
        throw new TypeError(`${where}.${field}: a non-empty list of strings`);
      }
    }
    for (const action of rule.actions) {
      if (action !== 'pull' && action !== 'push' && action !== '*')
        throw new TypeError(`${where}.actions: pull, push or *`);
    }
    if (
      rule.groups !== undefined &&
      (!Array.isArray(rule.groups) ||
        rule.groups.length === 0 ||
        rule.groups.some((g) => typeof g !== 'string' || g === ''))
    ) {
      throw new TypeError(`${where}.groups: a non-empty list of strings`);
    }
    const claims = Object.entries(rule.claims ?? {}).map(([name, globs]) => {
      const list = typeof globs === 'string' ? [globs] : globs;
      if (!Array.isArray(list) || list.length === 0 || list.some((g) => typeof g !== 'string'))
        throw new TypeError(`${where}.claims.${name}: a string or a non-empty list of strings`);
      return { name, patterns: list.map(globToRegExp) };
    });
    if (rule.claims !== undefined && (typeof rule.claims !== 'object' || claims.length === 0))
      throw new TypeError(`${where}.claims: an object of claim names to globs`);
    return {
      groups: rule.groups?.map(globToRegExp),
      claims,
      identities: rule.identities.map(globToRegExp),
      repositories: rule.repositories.map(globToRegExp),
      actions: new Set<string>(rule.actions.includes('*') ? ['pull', 'push'] : rule.actions),
    };
  });
  return {
    grant(identity, repository, requested) {
      const who = identity === undefined ? 'anonymous' : identityName(identity);
      const granted = new Set<Action>();
      for (const rule of compiled) {
        if (!rule.identities.some((re) => re.test(who))) continue;
        if (rule.groups && !rule.groups.some((re) => identity?.groups.some((g) => re.test(g))))
          continue;
        if (!rule.claims.every((c) => claimMatches(identity?.claims[c.name], c.patterns))) continue;
        if (!rule.repositories.some((re) => re.test(repository))) continue;
        for (const action of requested) {
          if (rule.actions.has(action)) granted.add(action as Action);
        }
      }
      return [...granted];
    },
  };
}

/** A claim value (string, number, boolean, or a list of those) against globs. */
function claimMatches(value: unknown, patterns: readonly RegExp[]): boolean {
  const values = Array.isArray(value) ? value : [value];
  return values.some(
    (v) =>
      (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') &&
      patterns.some((re) => re.test(String(v))),
  );
}

/** `*` any run without `/`, `**` any run; everything else literal. */
export function globToRegExp(glob: string): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        out += '.*';
        i++;
      } else {
        out += '[^/]*';
      }
    } else {
      out += c.replace(/[\\^$.|?+()[\]{}]/g, '\\$&');
    }
  }
  return new RegExp(`^${out}$`, 's');
}
