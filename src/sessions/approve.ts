// Approve and deny for the denial inbox: an item becomes the narrowest allow rule that lets it
// through, shown as a diff of the session's policy file; on confirmation the file is replaced at
// once and reloaded, so the still-running session gets the rule for its next request.
import { allowRequest, parsePolicy, RuleEditError } from '../policy/index.js';
import type { RuleText } from '../policy/index.js';
import type { Inbox, InboxItem } from './inbox.js';
import type { PolicyManager, ReloadResult } from './policy-reload.js';
import { checkReplacement } from './policy-reload.js';
import type { SessionRegistry } from './registry.js';

export interface ApprovalPlan {
  readonly item: InboxItem;
  /** The policy file that changes. */
  readonly file: string;
  readonly rule: RuleText;
  /** Unified diff of the file. */
  readonly diff: string;
  /** What the rule allows beyond the request itself. */
  readonly notes: readonly string[];
  /** Credentials the rule lets reach a host they are bound to (their secret can now be sent there). */
  readonly credentialReach: readonly { readonly name: string; readonly hosts: readonly string[] }[];
  /** What the new version cannot do in the session (see checkReplacement). */
  readonly warnings: readonly string[];
  /** Version in force and version after the change. */
  readonly from: string;
  readonly to: string;
  /** Every session following the file: the change applies to each. */
  readonly sessions: readonly string[];
}

/** Why an item cannot be approved; `status` is the admin endpoint's answer. */
export class ApprovalError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export class Approvals {
  constructor(
    private readonly sessions: SessionRegistry,
    private readonly inbox: Inbox,
    private readonly policies: PolicyManager,
  ) {}

  /** The change approving item `id` would make; nothing is written. */
  async plan(id: string): Promise<ApprovalPlan & { text: string }> {
    const item = this.inbox.get(id);
    if (!item) throw new ApprovalError(`no inbox item ${id} (see \`airlock inbox\`)`, 404);
    const session = this.sessions.get(item.session);
    if (!session) throw new ApprovalError(`session ${item.session} has ended; add the rule to its policy by hand if new sessions need it`, 409);
    const file = this.policies.file(session.id);
    if (!file) throw new ApprovalError(`session ${session.id} follows no policy file (it was given its policy as text), so there is no file to add the rule to`, 409);
    // diff loads with the first plan, not with every proxy (ARCHITECTURE.md, Start-up).
    const [text, { createTwoFilesPatch }] = await Promise.all([this.policies.files.read(file), import('diff')]);
    // What is approved must be what runs plus the rule: an edit nobody reloaded (or one the
    // reload refused) must not slip in with it.
    let onDisk: string;
    try {
      onDisk = parsePolicy(text, file).digest;
    } catch (err) {
      throw new ApprovalError(`${(err as Error).message} (fix the file, then approve again)`, 409);
    }
    if (onDisk !== session.policy.digest) {
      throw new ApprovalError(
        `${file} on disk (version ${onDisk}) is not the version session ${session.id} runs (${session.policy.digest}): ` +
          `review it and run \`airlock policy reload --session ${session.id}\` first, so that approving adds only the one rule`,
        409,
      );
    }
    let edit;
    try {
      edit = allowRequest(text, file, { host: item.host, port: item.port, scheme: item.scheme, method: item.method, path: item.path });
    } catch (err) {
      if (err instanceof RuleEditError) throw new ApprovalError(err.message, 409);
      throw err;
    }
    let warnings: string[];
    try {
      warnings = checkReplacement(session.policy, edit.policy, session.caScope);
    } catch (err) {
      throw new ApprovalError((err as Error).message, 409);
    }
    const following = this.sessions.list().filter((s) => this.policies.file(s.id) === file).map((s) => s.id);
    return {
      item,
      file,
      rule: edit.rule,
      diff: createTwoFilesPatch(file, file, text, edit.text, `version ${session.policy.digest}`, `version ${edit.policy.digest}`),
      notes: edit.notes,
      credentialReach: edit.credentialReach,
      warnings,
      from: session.policy.digest,
      to: edit.policy.digest,
      sessions: following,
      text: edit.text,
    };
  }

  /**
   * Writes the planned change and reloads it. `expect` is the version the operator confirmed (the
   * plan's `to`): if the plan would now differ, nothing is written.
   */
  async approve(id: string, expect?: string): Promise<{ plan: ApprovalPlan; reload: ReloadResult[] }> {
    const { text, ...plan } = await this.plan(id);
    if (expect !== undefined && expect !== plan.to) {
      throw new ApprovalError(`the policy changed since the plan you confirmed (it would now give version ${plan.to}, not ${expect}); review the new plan`, 409);
    }
    await this.policies.files.write(plan.file, text);
    const reload = await this.policies.reloadFile(plan.file);
    const failed = reload.find((r) => r.session === plan.item.session && !r.ok);
    if (failed) throw new ApprovalError(`${plan.file} was written, but the reload failed: ${failed.error?.message}`, 500);
    this.inbox.settle(id, 'approved');
    return { plan, reload };
  }

  /** Dismisses an item: it leaves the open list, and refusals like it count there no more. */
  deny(id: string): boolean {
    return this.inbox.settle(id, 'dismissed');
  }
}
