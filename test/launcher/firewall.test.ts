// Reading the engine's firewall rules for a session bridge, and what `airlock run` says when its
// own rules cannot be added. (The rules themselves are tested against the real engine in
// containment.test.ts and run.test.ts.)
import { describe, expect, it } from 'vitest';
import { engineRules } from '../../src/launcher/firewall.js';
import { firewallFailure } from '../../src/launcher/run.js';

const BRIDGE = 'br-f970196d73f3';

// `iptables -S` on Docker 20.10 with one ordinary and one internal network (BRIDGE), plus an
// Airlock session on BRIDGE.
const DOCKER_20 = `-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N AIRLOCK-s-0123456789ab
-N DOCKER
-N DOCKER-ISOLATION-STAGE-1
-N DOCKER-ISOLATION-STAGE-2
-N DOCKER-USER
-A INPUT -i ${BRIDGE} -m comment --comment "airlock.session=s-0123456789ab" -j AIRLOCK-s-0123456789ab
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o br-1d5a8d9e7835 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o br-1d5a8d9e7835 -j DOCKER
-A FORWARD -i br-1d5a8d9e7835 ! -o br-1d5a8d9e7835 -j ACCEPT
-A FORWARD -i br-1d5a8d9e7835 -o br-1d5a8d9e7835 -j ACCEPT
-A FORWARD -i ${BRIDGE} -o ${BRIDGE} -j ACCEPT
-A FORWARD -i ${BRIDGE} -m comment --comment "airlock.session=s-0123456789ab" -j DROP
-A DOCKER-ISOLATION-STAGE-1 ! -s 172.18.0.0/16 -o ${BRIDGE} -j DROP
-A DOCKER-ISOLATION-STAGE-1 ! -d 172.18.0.0/16 -i ${BRIDGE} -j DROP
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-USER -o ${BRIDGE} -m comment --comment "airlock.session=s-0123456789ab" -j DROP
-A DOCKER-USER -j RETURN
`;

describe('engineRules', () => {
  it("finds Docker's rules naming the bridge, and not Airlock's", () => {
    expect(engineRules(DOCKER_20, BRIDGE)).toEqual([
      `-A FORWARD -i ${BRIDGE} -o ${BRIDGE} -j ACCEPT`,
      `-A DOCKER-ISOLATION-STAGE-1 ! -s 172.18.0.0/16 -o ${BRIDGE} -j DROP`,
      `-A DOCKER-ISOLATION-STAGE-1 ! -d 172.18.0.0/16 -i ${BRIDGE} -j DROP`,
    ]);
  });

  it('finds none on an engine that manages no iptables (only Airlock names the bridge)', () => {
    const withoutDocker = DOCKER_20.split('\n').filter((l) => !l.includes(BRIDGE) || l.includes('airlock.session=')).join('\n');
    expect(engineRules(withoutDocker, BRIDGE)).toEqual([]);
    expect(engineRules('-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n', BRIDGE)).toEqual([]);
  });

  it('matches whole interface names only', () => {
    expect(engineRules(`-A FORWARD -i ${BRIDGE}0 -j ACCEPT\n-A FORWARD -i br-f970196d73f -j ACCEPT\n`, BRIDGE)).toEqual([]);
  });

  it("reads nftables listings too (Docker's nftables backend)", () => {
    const nft = [
      'table ip docker-bridges {',
      '\tchain filter-forward-out__' + BRIDGE + ' {',
      `\t\toifname "${BRIDGE}" iifname != "${BRIDGE}" counter drop comment "INTERNAL NETWORK INGRESS"`,
      '\t}',
      'table ip filter {',
      `\t\tiifname "${BRIDGE}" counter packets 0 bytes 0 drop comment "airlock.session=s-0123456789ab"`,
      '}',
    ].join('\n');
    expect(engineRules(nft, BRIDGE)).toEqual([`oifname "${BRIDGE}" iifname != "${BRIDGE}" counter drop comment "INTERNAL NETWORK INGRESS"`]);
  });
});

describe('firewallFailure', () => {
  it('refuses with what to do when the engine manages no rules for the network', () => {
    const text = firewallFailure('iptables -w -N AIRLOCK-s-1 failed: Permission denied', 'none');
    expect(text).toContain('the Docker engine manages no firewall rules for the session network');
    expect(text).toContain('Permission denied');
    expect(text).toContain('nothing would keep the container from routing through its gateway');
    expect(text).toMatch(/start dockerd with iptables enabled/);
  });

  it('says the host side would be open when the engine isolates the network, and that it could not tell when unknown', () => {
    expect(firewallFailure('boom', 'rules')).toMatch(/could reach every port the host listens on/);
    expect(firewallFailure('boom', 'rules')).not.toContain('manages no firewall rules');
    expect(firewallFailure('boom', 'unknown')).toMatch(/could not be read either/);
  });
});
