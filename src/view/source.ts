// What the live view reads: the sessions (with their policy's rules, never a secret) and the denial
// inbox. The view owns these interfaces; whoever runs it supplies them (the daemon from its own
// registry, `airlock ui` from a running daemon's admin endpoint and state dir).

/** One allow rule of a session's policy, as the view shows it (for per-rule hit counts). */
export interface ViewRule {
  /** The label audit lines name it by, e.g. "allow[0] api.github.com". */
  readonly label: string;
  /** False for rules that tunnel without inspection: their hits are the tunnel lines. */
  readonly inspect: boolean;
}

/** The policy a session enforces now, when the runner can replace it (hot reload). */
export interface ViewPolicyStatus {
  /** Content hash of the policy in force; audit lines carry it as policy_version. */
  readonly version: string;
  readonly loadedAt: string;
  /** Why the last reload was refused (the previous version stays in force). */
  readonly error?: string;
}

export interface ViewSession {
  readonly id: string;
  readonly policy: string;
  readonly created: string;
  /** The session's audit.jsonl: the view follows it. */
  readonly auditFile: string;
  /** The policy's allow rules, in file order; null when the runner cannot tell them. */
  readonly rules: readonly ViewRule[] | null;
  readonly policyStatus?: ViewPolicyStatus;
}

export interface SessionSource {
  /** The live sessions. Names and paths only: nothing here may hold a secret or a proxy token. */
  list(): Promise<readonly ViewSession[]>;
}

/** Refused requests of one session to one target, method and path, counted; or an agent's own request for access. */
export interface InboxItem {
  /** Stable while the item exists; what approvePreview/approve/dismiss take. */
  readonly id: string;
  readonly session: string;
  readonly host: string;
  readonly port: number;
  readonly scheme: 'http' | 'https';
  readonly path: string;
  /** The method, upper-case; none for a refused CONNECT (only host and port were known). */
  readonly methods: readonly string[];
  readonly count: number;
  readonly firstSeen: string;
  readonly lastSeen: string;
  /** The proxy's reason for the last refusal ("access_request" for an agent's request). */
  readonly reason: string;
  /** Set when the agent asked for access itself (its words, shown as text). */
  readonly agentReason?: string;
}

/** What approving an item would change, shown before the operator confirms. */
export interface ApprovePreview {
  /** The policy file it would write. */
  readonly file: string;
  /** A unified diff of that file. */
  readonly diff: string;
  /** Set when the change lets a credential reach more than before: said next to the diff. */
  readonly widensCredential?: string;
  /** What else the operator should read first: what the rule allows beyond the request, what a running session cannot take. */
  readonly notes?: readonly string[];
}

export interface ApproveResult {
  /** The policy version in force after the reload. */
  readonly version?: string;
  readonly message: string;
}

/** The operator's inbox of denials. Every method may throw an InboxError, shown to the operator. */
export interface InboxSource {
  list(): Promise<readonly InboxItem[]>;
  approvePreview(id: string): Promise<ApprovePreview>;
  approve(id: string): Promise<ApproveResult>;
  dismiss(id: string): Promise<void>;
}

/** A refusal of the inbox with a message for the operator (unknown item, approving not possible). */
export class InboxError extends Error {
  constructor(
    message: string,
    readonly status = 409,
  ) {
    super(message);
  }
}
