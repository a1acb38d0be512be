// Credential presets: the well-known env var names, hosts and injection points of common
// services, so a policy only has to say where the real secret comes from:
//
//   credentials:
//     - preset: github
//       secret: { env: AIRLOCK_GITHUB_TOKEN }
//
// Hosts here are already in normalised form (see hosts.ts); a test checks that.

import type { CredentialLocation } from './types.js';

export interface CredentialPreset {
  readonly name: string;
  readonly env: readonly string[];
  readonly hosts: readonly string[];
  readonly in: readonly CredentialLocation[];
  /** Request headers the service reads the credential from (lower-case). */
  readonly headers: readonly string[];
  /** null = a placeholder is generated per session. */
  readonly placeholder: string | null;
}

function preset(p: CredentialPreset): CredentialPreset {
  Object.freeze(p.env);
  Object.freeze(p.hosts);
  Object.freeze(p.in);
  Object.freeze(p.headers);
  return Object.freeze(p);
}

export const CREDENTIAL_PRESETS: Readonly<Record<string, CredentialPreset>> = Object.freeze({
  github: preset({
    name: 'github',
    env: ['GH_TOKEN', 'GITHUB_TOKEN'],
    hosts: ['api.github.com', 'github.com', 'uploads.github.com', '*.githubusercontent.com'],
    // git over HTTPS sends the token as a basic-auth password; the API uses a header.
    in: ['header', 'basic'],
    headers: ['authorization'],
    placeholder: null,
  }),
  anthropic: preset({
    name: 'anthropic',
    env: ['ANTHROPIC_API_KEY'],
    hosts: ['api.anthropic.com'],
    in: ['header'],
    headers: ['x-api-key', 'authorization'],
    placeholder: null,
  }),
  'anthropic-oauth': preset({
    name: 'anthropic-oauth',
    env: ['CLAUDE_CODE_OAUTH_TOKEN'],
    hosts: ['api.anthropic.com', 'mcp-proxy.anthropic.com'],
    in: ['header'],
    headers: ['authorization'],
    placeholder: null,
  }),
  // A Claude subscription login kept on the host (secret: { claude_login: ... }): the session gets a
  // placeholder .credentials.json instead of a variable; its refreshes are answered by the proxy.
  'claude-login': preset({
    name: 'claude-login',
    env: [],
    hosts: ['api.anthropic.com', 'mcp-proxy.anthropic.com'],
    in: ['header'],
    headers: ['authorization'],
    placeholder: null,
  }),
  // Google access tokens (secret: { google: KEY_FILE | adc }) minted on the host, for Vertex AI and
  // other Google APIs; gcloud reads CLOUDSDK_AUTH_ACCESS_TOKEN.
  vertex: preset({
    name: 'vertex',
    env: ['GOOGLE_OAUTH_ACCESS_TOKEN', 'CLOUDSDK_AUTH_ACCESS_TOKEN'],
    hosts: ['*.googleapis.com'],
    in: ['header'],
    headers: ['authorization'],
    placeholder: null,
  }),
  // Codex CLI reads CODEX_API_KEY (codex exec) or OPENAI_API_KEY; the OpenAI SDKs the latter.
  openai: preset({
    name: 'openai',
    env: ['OPENAI_API_KEY', 'CODEX_API_KEY'],
    hosts: ['api.openai.com'],
    in: ['header'],
    headers: ['authorization'],
    placeholder: null,
  }),
  npm: preset({
    name: 'npm',
    env: ['NPM_TOKEN'],
    hosts: ['registry.npmjs.org'],
    in: ['header'],
    headers: ['authorization'],
    placeholder: null,
  }),
  // A GitHub App's installation token, minted per session: secret: { github_app: {...} }.
  'github-app': preset({
    name: 'github-app',
    env: ['GH_TOKEN', 'GITHUB_TOKEN'],
    hosts: ['api.github.com', 'github.com', 'uploads.github.com', '*.githubusercontent.com'],
    in: ['header', 'basic'],
    headers: ['authorization'],
    placeholder: null,
  }),
  // AWS SigV4: the session signs with placeholder keys, the proxy re-signs: secret: { aws: {...} }.
  aws: preset({
    name: 'aws',
    env: ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'],
    hosts: ['*.amazonaws.com'],
    in: ['header'],
    headers: ['authorization'],
    placeholder: null,
  }),
});
