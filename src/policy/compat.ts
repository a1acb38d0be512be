// The conventions of other launchers, so an image written to their guides runs unchanged behind
// Airlock: where they put the proxy CA, and the placeholder values their images expect in place of
// credentials. Data only: the CLI applies the placeholders to the policy (a credential that sets
// its own `placeholder:` or `env:` keeps it) and the launcher copies the CA.

export interface CompatProfile {
  readonly name: string;
  /** Extra places in the container for the session's trust bundle. */
  readonly caPaths: readonly string[];
  /** By credential preset: the variables and the fixed placeholder the images expect. */
  readonly credentials: Readonly<Record<string, { readonly env: readonly string[]; readonly placeholder: string }>>;
}

export const COMPAT_PROFILES: Readonly<Record<string, CompatProfile>> = Object.freeze({
  // Clauderon's image compatibility guide: CA at /etc/clauderon/proxy-ca.pem, placeholders below.
  clauderon: Object.freeze({
    name: 'clauderon',
    caPaths: Object.freeze(['/etc/clauderon/proxy-ca.pem']),
    credentials: Object.freeze({
      github: Object.freeze({ env: Object.freeze(['GH_TOKEN', 'GITHUB_TOKEN']), placeholder: 'clauderon-proxy' }),
      'anthropic-oauth': Object.freeze({ env: Object.freeze(['CLAUDE_CODE_OAUTH_TOKEN']), placeholder: 'sk-ant-oat01-clauderon-proxy-placeholder' }),
      openai: Object.freeze({ env: Object.freeze(['OPENAI_API_KEY', 'CODEX_API_KEY']), placeholder: 'sk-openai-clauderon-proxy-placeholder' }),
    }),
  }),
});

export type CompatLookup = { readonly ok: true; readonly value: CompatProfile } | { readonly ok: false; readonly problem: string };

/** The profile called `name`, or a problem that lists the known ones. */
export function compatProfile(name: string): CompatLookup {
  const profile = Object.hasOwn(COMPAT_PROFILES, name) ? COMPAT_PROFILES[name] : undefined;
  if (profile) return { ok: true, value: profile };
  return { ok: false, problem: `${JSON.stringify(name)} is not a known convention; known: ${Object.keys(COMPAT_PROFILES).join(', ')}` };
}
