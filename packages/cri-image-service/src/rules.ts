import { readFileSync } from 'node:fs';
import { CREDENTIAL_PROVIDERS, type GetRegistryCredentialsOptions } from '@org/registry-auth';
import { compileImagePattern, matchImage } from '@org/registry-domains';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/**
 * KEP-4412: the pod's own service-account token, which kubelet hands exec credential plugins
 * when their config has `tokenAttributes`, presented to our proxy (whose `kubernetes` plugin
 * verifies it) as the password of the user `_k8s`.
 */
export interface ServiceAccountTokenCredentials {
  readonly provider: 'service-account-token';
  /** The token audience kubelet requests: the proxy's kubernetes plugin's audience. */
  readonly audience: string;
  /** The login name presented with the token. Default `_k8s` (the proxy routes it to kubernetes). */
  readonly username: string;
}

/** One rule: images matching any `match` glob get credentials from `credentials`. */
export interface Rule {
  /** kubelet `matchImages` globs (registry-domains `matchImage`). */
  readonly match: readonly string[];
  readonly credentials: GetRegistryCredentialsOptions | ServiceAccountTokenCredentials;
  /** Replace credentials kubelet already sent (CRI mode). Default false. */
  readonly override: boolean;
}

const schema = z
  .object({
    rules: z
      .array(
        z
          .object({
            match: z.array(z.string().min(1)).min(1),
            // The source options are checked by @org/registry-auth when used; here the provider.
            credentials: z.looseObject({
              provider: z.enum([...CREDENTIAL_PROVIDERS, 'service-account-token']),
            }),
            override: z.boolean().optional(),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();

const serviceAccountTokenSchema = z
  .object({
    provider: z.literal('service-account-token'),
    audience: z.string().min(1).max(256),
    username: z.string().min(1).max(256).optional(),
  })
  .strict();

export class RulesError extends Error {
  override readonly name = 'RulesError';
}

/**
 * Checks a rules document (ARCHITECTURE.md: `rules: [{ match, credentials, override? }]`), every
 * problem listed by path in one message; each `match` glob must be one kubelet accepts.
 *
 * @throws RulesError
 */
export function parseRules(raw: unknown, source = 'rules'): Rule[] {
  const result = schema.safeParse(raw);
  const problems = result.success
    ? []
    : result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  if (result.success) {
    result.data.rules.forEach((rule, i) => {
      if (rule.credentials.provider === 'service-account-token') {
        const sa = serviceAccountTokenSchema.safeParse(rule.credentials);
        if (!sa.success)
          for (const issue of sa.error.issues)
            problems.push(`rules.${i}.credentials.${issue.path.join('.')}: ${issue.message}`);
      }
      rule.match.forEach((glob, j) => {
        try {
          compileImagePattern(glob);
        } catch (err) {
          problems.push(`rules.${i}.match.${j}: ${(err as Error).message}`);
        }
      });
    });
  }
  if (!result.success || problems.length > 0)
    throw new RulesError(`invalid ${source}: ${problems.join('; ')}`);
  return result.data.rules.map((r) => ({
    match: r.match,
    credentials:
      r.credentials.provider === 'service-account-token'
        ? {
            provider: 'service-account-token' as const,
            audience: r.credentials.audience as string,
            username: (r.credentials.username as string | undefined) ?? '_k8s',
          }
        : (r.credentials as GetRegistryCredentialsOptions),
    override: r.override ?? false,
  }));
}

/** Reads and checks a rules file (YAML; JSON is YAML too). @throws RulesError */
export function loadRules(file: string): Rule[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new RulesError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new RulesError(`${file} is not YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  return parseRules(raw, file);
}

/** The first rule one of whose globs matches `image`, with its index; undefined: none. */
export function ruleFor(
  rules: readonly Rule[],
  image: string,
): { rule: Rule; index: number } | undefined {
  const index = rules.findIndex((r) => r.match.some((glob) => matchImage(glob, image)));
  return index < 0 ? undefined : { rule: rules[index] as Rule, index };
}
