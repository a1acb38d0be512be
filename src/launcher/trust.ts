// The session's trust bundle inside a container, for the tools that read no CA variable: copied
// over the image's system bundle (where tools read their default roots) and, when the image has a
// JVM, over its trust store (Java reads neither a PEM file nor a variable). Written into the
// created container before it starts, as the engine writes (root), whoever the session runs as.
import { posix } from 'node:path';
import type Docker from 'dockerode';
import { jksTrustStore } from '../ca/jks.js';
import { tarOf } from './tar.js';

/** Default CA bundle files: Debian/Ubuntu/Alpine, Fedora/RHEL, Alpine/BSD-style, SUSE. */
export const SYSTEM_BUNDLE_PATHS = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/cert.pem',
  '/etc/ssl/ca-bundle.pem',
] as const;

/** JVM trust stores: Debian's ca-certificates-java, Fedora/RHEL's; plus $JAVA_HOME's (below). */
export const JVM_TRUST_STORE_PATHS = ['/etc/ssl/certs/java/cacerts', '/etc/pki/java/cacerts'] as const;

export interface InstalledTrust {
  readonly system: string[];
  readonly jvm: string[];
}

/** Where a JVM of an image with these ENV entries keeps its default trust store. */
export function jvmTrustStoreCandidates(imageEnv: readonly string[]): string[] {
  const javaHome = imageEnv.find((e) => e.startsWith('JAVA_HOME='))?.slice('JAVA_HOME='.length);
  const own = javaHome && posix.isAbsolute(javaHome) ? [posix.join(javaHome, 'lib/security/cacerts'), posix.join(javaHome, 'jre/lib/security/cacerts')] : [];
  return [...new Set([...JVM_TRUST_STORE_PATHS, ...own])];
}

async function exists(container: Docker.Container, path: string): Promise<boolean> {
  try {
    await container.infoArchive({ path });
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false;
    throw err;
  }
}

async function replaceFile(container: Docker.Container, path: string, content: Buffer | string): Promise<void> {
  // Only the file: no directory entries, which would reset the modes of /etc and its children.
  await container.putArchive(tarOf([{ name: posix.basename(path), content, mode: 0o644 }]), { path: posix.dirname(path) });
}

/**
 * Replaces the image's system bundle(s) and JVM trust store(s) that exist in `container` (created,
 * not started) with the session bundle; returns what it replaced.
 */
export async function installTrust(container: Docker.Container, bundlePem: string, imageEnv: readonly string[]): Promise<InstalledTrust> {
  const system: string[] = [];
  for (const path of SYSTEM_BUNDLE_PATHS) {
    if (!(await exists(container, path))) continue;
    await replaceFile(container, path, bundlePem);
    system.push(path);
  }
  const jvm: string[] = [];
  let store: Buffer | undefined;
  for (const path of jvmTrustStoreCandidates(imageEnv)) {
    if (!(await exists(container, path))) continue;
    store ??= jksTrustStore(bundlePem);
    await replaceFile(container, path, store);
    jvm.push(path);
  }
  return { system, jvm };
}
