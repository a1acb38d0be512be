// The validated, frozen shape of a policy. Everything inward of the loader sees only these types.

export type Method = string; // upper-case HTTP method token, e.g. "GET"

export interface AllowRule {
  /** Position in the file's `allow:` list, for messages ("allow[2]"). */
  readonly index: number;
  /** Line in the policy file where this rule starts (1-based). */
  readonly line: number;
  /** Normalised pattern: exact name ("api.github.com"), wildcard ("*.example.com") or IP literal. */
  readonly host: string;
  readonly kind: 'exact' | 'wildcard' | 'ip';
  /** Upper-case methods, or null for any method. */
  readonly methods: readonly Method[] | null;
  readonly ports: readonly number[];
  /** Path globs (`*` any run of characters, `?` one character), or null for any path. */
  readonly paths: readonly string[] | null;
  /** false: tunnel without TLS interception (CONNECT-level rules and audit only). */
  readonly inspect: boolean;
  /** Human label used in decisions and audit lines, e.g. "allow[0] api.github.com". */
  readonly label: string;
  /**
   * Git over smart HTTP on this host, by repository and ref; null: no git scoping. A rule with
   * git: allows only git's smart-HTTP requests, and only as this block says.
   */
  readonly git: GitRule | null;
  /**
   * The GitHub API on this host, by repository, endpoint and GraphQL mutation; null: no API
   * scoping. A rule with github: decides every request to its host (github-decide.ts).
   */
  readonly github: GithubRule | null;
  /**
   * An MCP server on this host, by tool; null: no MCP scoping. A host some mcp: rule covers is
   * decided by mcp: rules alone, and the bodies of what they allow are read (mcp-decide.ts).
   */
  readonly mcp: McpRule | null;
}

export interface McpRule {
  /** Tool-name globs that tools/call may name and tools/list shows. */
  readonly tools: readonly string[];
}

export interface GithubRule {
  /** Lower-case owner/name globs ("acme/*") whose /repos/{owner}/{repo}/ endpoints may be used. */
  readonly repos: readonly string[];
  /** Names of default-denied endpoints (DANGEROUS_ENDPOINTS) this rule allows. */
  readonly allow: readonly string[];
  /** GraphQL mutation field names that may run; queries always may. */
  readonly mutations: readonly string[];
}

export interface GitRule {
  /** Repository globs ("acme/*") that may be cloned and fetched. */
  readonly fetch: readonly string[];
  readonly push: readonly GitPushRule[];
}

/** Which refs of which repositories may be pushed, and how. */
export interface GitPushRule {
  /** Field path for messages, e.g. "allow[0].git.push[1]". */
  readonly label: string;
  readonly line: number;
  /** Repository glob ("acme/app", "acme/*"), matched against the URL path without ".git". */
  readonly repo: string;
  /** Branch globs, matched against the name after refs/heads/. */
  readonly branches: readonly string[];
  /** Tag globs, matched against the name after refs/tags/. */
  readonly tags: readonly string[];
  /** A ref that does not exist yet may be created. */
  readonly create: boolean;
  /** A branch may be moved to a commit that does not descend from it; a tag may be moved. */
  readonly force: boolean;
  readonly delete: boolean;
}

export type SecretSource =
  | { readonly kind: 'env'; readonly name: string }
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'command'; readonly argv: readonly string[]; readonly ttlSeconds: number }
  /** A Claude subscription login: the store (`.credentials.json`) on the host; `~/` is the host user's home. */
  | { readonly kind: 'claude_login'; readonly path: string }
  /** Google access tokens minted on the host: from a service-account key file, or the user's ADC (keyFile null). */
  | { readonly kind: 'google'; readonly keyFile: string | null; readonly scopes: readonly string[] }
  | GithubAppSource
  | AwsSource;

/** A GitHub App: each session mints its own installation token, narrowed to these repositories. */
export interface GithubAppSource {
  readonly kind: 'github_app';
  readonly appId: string;
  /** PEM file of the App's private key, read on the host only. */
  readonly privateKey: string;
  readonly installationId: string;
  /** Repository names (without the owner) the token is limited to; empty = all the installation has. */
  readonly repositories: readonly string[];
  /** Permission → read/write/admin; empty = all the installation has. */
  readonly permissions: Readonly<Record<string, string>>;
  /** REST API base (GitHub Enterprise: https://HOST/api/v3). */
  readonly api: string;
}

/** AWS keys for SigV4: the session signs with placeholders, the proxy re-signs with these. */
export interface AwsSource {
  readonly kind: 'aws';
  /** A profile of the host's AWS config (keys, credential_process, SSO, role); null = the environment's AWS_ACCESS_KEY_ID etc. */
  readonly profile: string | null;
}

export type CredentialLocation = 'header' | 'basic' | 'query' | 'body';

export interface CredentialSpec {
  readonly name: string;
  readonly line: number;
  readonly env: readonly string[];
  /** Operator-chosen placeholder; null = generated per session. */
  readonly placeholder: string | null;
  readonly secret: SecretSource;
  /** Normalised host patterns (exact or wildcard) the secret may be sent to, over TLS only. */
  readonly hosts: readonly string[];
  readonly in: readonly CredentialLocation[];
  /**
   * Lower-case names of the request headers the placeholder may be swapped in ("header" and
   * "basic"); anywhere else it is refused, so the secret cannot be parked in a header a bound
   * host stores or echoes.
   */
  readonly headers: readonly string[];
  readonly body: { readonly types: readonly string[]; readonly maxBytes: number } | null;
}

export interface Limits {
  /** Total request-body bytes the session may send upstream; over it, 429. */
  readonly maxUploadBytes: number | null;
  /** Concurrent client connections (tunnels and plain connections) per session. */
  readonly maxConnections: number | null;
  /** Sustained request rate per session (burst: one second's worth). */
  readonly requestsPerSecond: number | null;
}

/** Resource limits of the `airlock run` container; null = the launcher's default. */
export interface ContainerLimits {
  /** Processes and threads. */
  readonly pids: number | null;
  readonly memoryBytes: number | null;
  /** CPUs' worth of time (a CFS quota), e.g. 0.5 or 2. */
  readonly cpus: number | null;
}

export interface Policy {
  readonly version: 1;
  /**
   * Which version of the policy this is: the first 12 hex digits of the SHA-256 of its meaning
   * (everything but where it was read from and line numbers), so an edit to comments or layout
   * keeps it and any change to what it allows changes it. Audit lines carry it.
   */
  readonly digest: string;
  readonly name: string;
  /** Where it was loaded from, for messages. */
  readonly source: string;
  /** enforce: deny what no rule allows. report: allow all, audit would-be denials. */
  readonly mode: 'enforce' | 'report';
  readonly allow: readonly AllowRule[];
  readonly credentials: readonly CredentialSpec[];
  readonly limits: Limits;
  readonly container: ContainerLimits;
  /** Extra hosts read for LLM token usage, and prices (`usage:`); absent when not given. */
  readonly usage?: UsageSettings;
}

/** What a request looks like to the decision function. Host is already normalised. */
export interface RequestFacts {
  /** 'connect' = the CONNECT line (method/path not yet known); 'request' = a full HTTP request. */
  readonly phase: 'connect' | 'request';
  readonly scheme: 'http' | 'https';
  readonly host: string;
  readonly port: number;
  readonly method?: string;
  /** Path without query, dot segments already resolved. */
  readonly path?: string;
  /**
   * The path as the client sent it (no query). A rule with paths: refuses it when servers could
   * read it differently (encoded slashes, "..;", double encoding, ...); absent: `path` is judged.
   */
  readonly rawPath?: string;
  /** What the request asks the server to treat it as instead of `method`; a rule with methods: must allow each. */
  readonly methodOverrides?: readonly MethodOverride[];
  /**
   * Names of headers that ask the server to serve another path than the request's (X-Original-URL,
   * X-Rewrite-URL); a rule with paths: refuses a request that carries one.
   */
  readonly pathOverrides?: readonly string[];
  /** The query with its "?" ("" when none): git's info/refs names its service there. */
  readonly query?: string;
}

/** A method override: X-HTTP-Method-Override and its kin, or the `_method` query parameter. */
export interface MethodOverride {
  /** Where it was found, for messages: "header X-HTTP-Method-Override", "query parameter _method". */
  readonly via: string;
  /** The method asked for, upper-cased as the frameworks that honour overrides do. */
  readonly method: string;
}

export type DenyReason =
  | 'no_rule'
  | 'port_not_allowed'
  | 'method_not_allowed'
  | 'path_not_allowed'
  | 'invalid_host'
  | 'host_mismatch'
  | 'auth_required'
  | 'credential_misuse'
  | 'bad_request'
  | 'upstream_error'
  | 'destination_blocked'
  | 'rate_limited'
  | 'upload_budget_exceeded'
  | 'audit_unavailable'
  | 'git_ref_not_allowed'
  | 'graphql_not_allowed'
  | 'mcp_not_allowed';

/**
 * What the policy says of a request: allow it, deny it, or, in report mode, let a denial of the
 * policy's rules through while it is audited as would_deny.
 */
export type Decision =
  | (DecisionCommon & { readonly action: 'allow'; readonly reason: 'allowed' })
  | (DecisionCommon & { readonly action: 'deny' | 'would_deny'; readonly reason: DenyReason });

interface DecisionCommon {
  /** Label of the rule that decided, or null when none did. */
  readonly rule: string | null;
  /** Human sentence for 403 bodies and `airlock audit`. */
  readonly message: string;
  /** For CONNECTs that go ahead: terminate TLS and inspect (true) or tunnel blindly (false). */
  readonly inspect: boolean;
  /** An allowed git push (POST git-receive-pack): its body's ref updates are still to be checked. */
  readonly gitPush?: GitPushTarget;
  /** For the audit line: what the request was judged as (a GitHub API endpoint, say). */
  readonly detail?: string;
  /** An allowed POST /graphql: its body is still to be checked (decideGraphql). */
  readonly graphql?: GraphqlTarget;
  /** An allowed request to an MCP server: its body and its response are still to be checked. */
  readonly mcp?: McpTarget;
}

/** What the proxy checks of a request an mcp: rule let through. */
export interface McpTarget {
  readonly rule: McpRule;
  /** The deciding rule's label, for messages. */
  readonly label: string;
}

/** A GraphQL request a github: rule let through to the body check. */
export interface GraphqlTarget {
  readonly mutations: readonly string[];
}

/** A push a git rule let through to the body check: the repository and its push entries. */
export interface GitPushTarget {
  readonly repo: string;
  /** The rule's push entries whose repo glob matches. */
  readonly rules: readonly GitPushRule[];
}

// ---- usage: (policy/usage.ts parses it)

export type UsageApi = 'anthropic' | 'openai';

export interface UsageApiRoute {
  readonly line: number;
  /** Normalised exact host name. */
  readonly host: string;
  readonly api: UsageApi;
  /** Exact paths (no query) whose POST responses are read. */
  readonly paths: readonly string[];
}

/** Prices in US dollars per million tokens. */
export interface ModelPrice {
  readonly line: number;
  /** Model name glob (`*` any run, `?` one character). */
  readonly model: string;
  readonly input: number;
  readonly output: number;
  readonly cacheRead: number;
  readonly cacheWrite: number;
}

export interface UsageSettings {
  readonly apis: readonly UsageApiRoute[];
  readonly pricing: readonly ModelPrice[];
}
