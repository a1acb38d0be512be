// Secret sources whose value the proxy makes on the host rather than reads: a GitHub App's
// installation tokens (minted per session) and AWS keys (used to re-sign SigV4 requests). Parsed
// here, beside the plain sources of credentials.ts, so each kind keeps its hints in one place.
import type { Reader, Value } from './reader.js';
import type { AwsSource, GithubAppSource } from './types.js';

const GITHUB_APP_KEYS = ['app_id', 'private_key', 'installation_id', 'repositories', 'permissions', 'api'] as const;
const AWS_KEYS = ['profile'] as const;
const ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
const REPO_RE = /^[A-Za-z0-9._-]{1,100}$/;
// GitHub's names for App permissions (the keys of "permissions" in its token request).
const PERMISSIONS = [
  'actions', 'administration', 'checks', 'codespaces', 'contents', 'dependabot_secrets', 'deployments', 'environments',
  'issues', 'metadata', 'packages', 'pages', 'pull_requests', 'repository_custom_properties', 'repository_hooks',
  'repository_projects', 'secret_scanning_alerts', 'secrets', 'security_events', 'single_file', 'statuses',
  'vulnerability_alerts', 'workflows', 'members', 'organization_administration', 'organization_custom_roles',
  'organization_events', 'organization_hooks', 'organization_packages', 'organization_plan', 'organization_projects',
  'organization_secrets', 'organization_self_hosted_runners', 'organization_user_blocking', 'team_discussions',
  'email_addresses', 'followers', 'git_ssh_keys', 'gpg_keys', 'interaction_limits', 'profile', 'starring',
];
const ACCESS = ['read', 'write', 'admin'];
const PROFILE_RE = /^[A-Za-z0-9_.@+=,-]{1,128}$/;

const HINT = {
  app: 'Write github_app: { app_id: 123456, private_key: /path/app.private-key.pem, installation_id: 7890123, repositories: [repo-a], permissions: { contents: write } }',
  appId: 'Give app_id: the App ID (or client ID) from the App\'s settings page, e.g. app_id: 123456',
  key: 'Give private_key: the path of the .pem file GitHub generated for the App, e.g. private_key: ~/.config/airlock/my-app.pem',
  installation: 'Give installation_id: the number at the end of the installation\'s settings URL, e.g. installation_id: 7890123',
  repositories: 'Give repositories: a list of repository names of the installation\'s account, e.g. repositories: [airlock, "octo-org/website"]',
  permissions: 'Give permissions: a map of permission to read, write or admin, e.g. permissions: { contents: write, pull_requests: write }',
  api: 'Give api: the REST API base URL over https, e.g. api: https://github.example.com/api/v3 (default https://api.github.com)',
  aws: 'Write aws: { profile: NAME } to use a profile of the host\'s AWS config, or aws: {} for AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY of the environment airlock starts in',
  profile: 'Give profile: the name of a profile in ~/.aws/config or ~/.aws/credentials, e.g. profile: bedrock',
} as const;

function id(r: Reader, v: Value, hint: string): string {
  const raw = r.scalar(v, hint);
  const text = typeof raw === 'number' && Number.isSafeInteger(raw) ? String(raw) : raw;
  if (typeof text !== 'string' || !ID_RE.test(text)) r.fail(v, v.path, `${JSON.stringify(raw)} is not an id`, hint);
  return text;
}

export function parseGithubApp(r: Reader, v: Value): GithubAppSource {
  const f = r.entries(v, GITHUB_APP_KEYS, HINT.app);
  const need = (key: (typeof GITHUB_APP_KEYS)[number], hint: string): Value => {
    const found = f.get(key);
    if (!found) r.fail(v, `${v.path}.${key}`, 'is missing', hint);
    return found;
  };
  const appId = id(r, need('app_id', HINT.appId), HINT.appId);
  const keyValue = need('private_key', HINT.key);
  const privateKey = r.string(keyValue, HINT.key);
  if (privateKey.trim() === '' || privateKey.includes('\0')) r.fail(keyValue, keyValue.path, `${JSON.stringify(privateKey)} is not a file path`, HINT.key);
  const installationId = id(r, need('installation_id', HINT.installation), HINT.installation);

  const repositories: string[] = [];
  const reposValue = f.get('repositories');
  if (reposValue) {
    const items = r.list(reposValue, HINT.repositories);
    if (items.length === 0) r.fail(reposValue, reposValue.path, 'is an empty list (leave it out for every repository of the installation)', HINT.repositories);
    for (const item of items) {
      const full = r.string(item, HINT.repositories);
      // The installation belongs to one account: "owner/name" is accepted and names the same repository.
      const name = full.includes('/') ? full.slice(full.indexOf('/') + 1) : full;
      if (!REPO_RE.test(name) || full.split('/').length > 2) r.fail(item, reposValue.path, `${JSON.stringify(full)} is not a repository name`, HINT.repositories);
      if (!repositories.includes(name)) repositories.push(name);
    }
  }

  const permissions: Record<string, string> = {};
  const permsValue = f.get('permissions');
  if (permsValue) {
    for (const [name, level] of r.entries(permsValue, PERMISSIONS, HINT.permissions)) {
      const access = r.string(level, HINT.permissions);
      if (!ACCESS.includes(access)) r.fail(level, level.path, `${JSON.stringify(access)} is not read, write or admin`, HINT.permissions);
      permissions[name] = access;
    }
  }

  let api = 'https://api.github.com';
  const apiValue = f.get('api');
  if (apiValue) {
    const text = r.string(apiValue, HINT.api);
    let url: URL | null = null;
    try {
      url = new URL(text);
    } catch {
      url = null;
    }
    if (!url || url.protocol !== 'https:' || url.username || url.password || url.search || url.hash) {
      r.fail(apiValue, apiValue.path, `${JSON.stringify(text)} is not an https URL`, HINT.api);
    }
    api = url.href.replace(/\/+$/, '');
  }
  return Object.freeze({
    kind: 'github_app',
    appId,
    privateKey,
    installationId,
    repositories: Object.freeze(repositories),
    permissions: Object.freeze(permissions),
    api,
  });
}

export function parseAws(r: Reader, v: Value): AwsSource {
  if (r.isNull(v)) return Object.freeze({ kind: 'aws', profile: null });
  const f = r.entries(v, AWS_KEYS, HINT.aws);
  const profileValue = f.get('profile');
  let profile: string | null = null;
  if (profileValue) {
    profile = r.string(profileValue, HINT.profile);
    if (!PROFILE_RE.test(profile)) r.fail(profileValue, profileValue.path, `${JSON.stringify(profile)} is not a profile name`, HINT.profile);
  }
  return Object.freeze({ kind: 'aws', profile });
}
