import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { exportsFor, withheldByExports } from '../../src/cli/daemon.js';

describe('session exports (eval "$(airlock session create)")', () => {
  it('quotes values for the shell and unsets the secret source variables', () => {
    const text = exportsFor({
      id: 's-abc123',
      policy: 'p',
      proxy_url: 'http://s-abc123:tok@127.0.0.1:8080',
      proxy_port: 8080,
      bundle: "/tmp/it's here/bundle.pem",
      audit: '/tmp/a\nrm -rf /',
      created: '',
      env: { GH_TOKEN: 'ghp_airlock-github-x' },
      secret_source_env: ['AIRLOCK_GITHUB_TOKEN'],
    });
    const out = execFileSync('sh', ['-c', `${text}\nprintf '%s|%s|%s|%s|%s' "$SSL_CERT_FILE" "$GH_TOKEN" "\${AIRLOCK_GITHUB_TOKEN-unset}" "$HTTPS_PROXY" "\${ALL_PROXY-unset}"`], {
      // A proxy variable the session does not set goes too, as exec drops it: clients may read it.
      env: { PATH: process.env.PATH, AIRLOCK_GITHUB_TOKEN: 'real', ALL_PROXY: 'socks5://elsewhere:1080' },
    }).toString();
    expect(out).toBe("/tmp/it's here/bundle.pem|ghp_airlock-github-x|unset|http://s-abc123:tok@127.0.0.1:8080|unset");
  });

  it('also unsets the variables holding a secret, except those the session sets itself', () => {
    const info = {
      id: 's-abc123',
      policy: 'p',
      proxy_url: 'http://s-abc123:tok@127.0.0.1:8080',
      proxy_port: 8080,
      bundle: '/tmp/bundle.pem',
      audit: '/tmp/audit.jsonl',
      created: '',
      env: { GH_TOKEN: 'ghp_airlock-github-x' },
      secret_source_env: ['AIRLOCK_GITHUB_TOKEN'],
      withheld_env: ['AIRLOCK_GITHUB_TOKEN', 'GH_TOKEN', 'GITHUB_PAT', 'HTTPS_PROXY', 'REPO_URL'],
    };
    const text = exportsFor(info);
    expect(text.match(/^unset .*$/gm)).toEqual([
      'unset AIRLOCK_GITHUB_TOKEN', 'unset GITHUB_PAT', 'unset REPO_URL', 'unset ALL_PROXY', 'unset all_proxy',
      // Inline CA settings, which would be used instead of the session's bundle.
      'unset npm_config_ca', 'unset NPM_CONFIG_CA', 'unset YARN_CA',
    ]);
    const out = execFileSync('sh', ['-c', `${text}\nprintf '%s|%s|%s|%s' "$GH_TOKEN" "\${GITHUB_PAT-unset}" "\${REPO_URL-unset}" "$HTTPS_PROXY"`], {
      env: { PATH: process.env.PATH, GH_TOKEN: 'real', GITHUB_PAT: 'real', REPO_URL: 'https://x:real@h/', HTTPS_PROXY: 'http://real@p' },
    }).toString();
    expect(out).toBe('ghp_airlock-github-x|unset|unset|http://s-abc123:tok@127.0.0.1:8080');
    // Only the copies are news to the user: the source and the variables the session sets are not listed.
    expect(withheldByExports(info)).toEqual(['GITHUB_PAT', 'REPO_URL']);
  });
});
