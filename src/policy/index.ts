// Public API of the policy module. Other parts of Airlock import from here only.

export type * from './types.js';
export { parsePolicy, PolicyError } from './parse.js';
export { decide, inspectedHostPatterns, reachableHostPatterns } from './decide.js';
export { normalizeHost, isIpLiteral, matchHostPattern } from './hosts.js';
export { CREDENTIAL_PRESETS, type CredentialPreset } from './presets.js';
export { checkCpus, checkMemory, checkPids, checkSize, CONTAINER_HINT, formatBytes, sizeFlag, type Checked } from './container.js';
export { allowRequest, credentialReach, narrowestRule, RuleEditError, type RequestToAllow, type RuleEdit, type RuleText } from './edit.js';
export { parseAllowEntry, type AllowEntry } from './host-pattern.js';
export { COMPAT_PROFILES, compatProfile, type CompatProfile } from './compat.js';
export { DANGEROUS_ENDPOINTS, decideGraphql, githubRequestOf, type GraphqlVerdict } from './github-decide.js';
export { decideFastForward, decideRefUpdate, gitRequestOf, refUpdateKind, type RefUpdate, type RefVerdict } from './git-decide.js';
export { decideMcpBody, decideMcpMessage, filterToolsResult, MCP_ERROR, type McpBodyVerdict, type McpMessageVerdict } from './mcp-decide.js';
export { parseStrictJson, utf8Text, StrictJsonError, type JsonValue } from './strict-json.js';
export { BUILTIN_USAGE_ROUTES, costOf, NO_USAGE_SETTINGS, priceFor, USAGE_API_PATHS, type TokenCounts } from './usage.js';
