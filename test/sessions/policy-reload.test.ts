// What a running session can take on reload: anything but a change of credentials; and what the
// new version cannot do in it (hosts its CA was not issued for, limits fixed at start).
import { describe, expect, it } from 'vitest';
import { parsePolicy, PolicyError } from '../../src/policy/index.js';
import { checkReplacement } from '../../src/sessions/policy-reload.js';

const BASE = `version: 1
name: p
allow:
  - host: api.example.com
  - host: "*.cdn.example"
credentials:
  - name: api
    env: [API_TOKEN]
    secret: { env: REAL_TOKEN }
    hosts: [api.example.com]
`;
const policy = (text: string) => parsePolicy(text, 'p.yaml');

describe('checkReplacement', () => {
  it('takes new rules, and only warns about what the running session cannot do', () => {
    const scope = ['api.example.com', 'cdn.example'];
    expect(checkReplacement(policy(BASE), policy(BASE.replace('  - host: "*.cdn.example"', '  - host: "*.cdn.example"\n    methods: [GET]')), scope)).toEqual([]);
    expect(checkReplacement(policy(BASE), policy(BASE.replace('allow:\n', 'allow:\n  - host: img.cdn.example\n')), scope)).toEqual([]);
    const [outside] = checkReplacement(policy(BASE), policy(BASE.replace('allow:\n', 'allow:\n  - host: other.example\n  - host: blind.example\n    inspect: false\n')), scope);
    expect(outside).toContain("this session's CA was issued for api.example.com, cdn.example only, so TLS to other.example cannot be inspected");
    expect(checkReplacement(policy(BASE), policy(BASE.replace('allow:\n', 'allow:\n  - host: other.example\n')), null)).toEqual([]);
    expect(checkReplacement(policy(BASE), policy(BASE.replace('name: p', 'name: p\nmode: report')), scope)[0]).toContain('mode: report lets every host through inspected');
    expect(checkReplacement(policy(BASE), policy(`${BASE}limits: { max_connections: 5 }\n`), scope)).toEqual(['limits: changes apply to sessions started from now on, not to this one']);
  });

  it('refuses any change to credentials, naming file, line and field', () => {
    const refused = (text: string) => {
      try {
        checkReplacement(policy(BASE), policy(text), null);
      } catch (err) {
        expect(err).toBeInstanceOf(PolicyError);
        return (err as PolicyError).message;
      }
      throw new Error('not refused');
    };
    expect(refused(`${BASE}  - name: key\n    env: [KEY]\n    secret: { file: /home/u/.ssh/id_ed25519 }\n    hosts: [api.example.com]\n`)).toMatch(
      /^p\.yaml:11: credentials\[1\]: credential "key" \(secret from file \/home\/u\/\.ssh\/id_ed25519\) is not one this session started with\. A running session keeps/,
    );
    expect(refused(BASE.replace('{ env: REAL_TOKEN }', '{ command: [cat, /etc/shadow] }'))).toContain('p.yaml:7: credentials[0].secret: credential "api" would take its secret from command cat /etc/shadow instead of env REAL_TOKEN');
    expect(refused(BASE.replace('hosts: [api.example.com]', 'hosts: [api.example.com, attacker.example]'))).toContain('p.yaml:7: credentials[0]: credential "api" differs from the one this session started with');
    expect(refused(BASE.replace(/credentials:[^]*$/, ''))).toContain('p.yaml: credentials: credential "api" was removed');
    // Moving the section around is no change.
    expect(checkReplacement(policy(BASE), policy(`# moved\n${BASE.replace('version: 1\n', '')}version: 1\n`), null)).toEqual([]);
  });
});
