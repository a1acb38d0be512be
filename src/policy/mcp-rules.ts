// The `mcp:` block of an allow rule: an MCP server (streamable HTTP or the older HTTP+SSE
// transport) whose tools may be called only as listed.
//
//   - host: mcp.example.com
//     paths: ["/mcp", "/sse", "/messages*"]   # optional, as on any rule
//     mcp:
//       tools: ["search_*", "read_file"]       # tools/call only for these; tools/list shows only these
//
// Tool names are globs (`*` any run of characters, `?` one), matched exactly as written: case
// matters, as it does to MCP servers. `tools: []` allows no tool (useful with mode: report, to
// learn which tools a session uses).
import { Reader, type Value } from './reader.js';
import type { McpRule } from './types.js';

const MCP_KEYS = ['tools'] as const;

// What a tool-name glob may hold: printable characters without spaces (the spec's names are
// [A-Za-z0-9_.-], servers use more).
const TOOL_GLOB = /^[\x21-\x7e]{1,128}$/;

const HINT = {
  mcp: 'Write mcp: as a map, e.g. mcp: { tools: ["search_*", "read_file"] }',
  tools: 'Use a list of tool-name globs, e.g. tools: ["search_*", "read_file"] (tools: [] allows none)',
} as const;

export function parseMcpRule(r: Reader, v: Value): McpRule {
  const fields = r.entries(v, MCP_KEYS, HINT.mcp);
  const toolsValue = fields.get('tools');
  if (!toolsValue) r.fail(v, `${v.path}.tools`, 'is missing', `${HINT.tools}; an MCP rule names the tools the session may call`);
  if (r.isNull(toolsValue)) r.fail(toolsValue, toolsValue.path, 'has no value', HINT.tools);
  const tools: string[] = [];
  for (const item of r.list(toolsValue, HINT.tools)) {
    const glob = r.string(item, HINT.tools);
    if (!TOOL_GLOB.test(glob)) r.fail(item, item.path, `${JSON.stringify(glob)} is not a tool-name glob (printable characters, no spaces, at most 128)`, HINT.tools);
    if (!tools.includes(glob)) tools.push(glob);
  }
  return Object.freeze({ tools: Object.freeze(tools) });
}
