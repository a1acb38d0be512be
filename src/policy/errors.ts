// The one error type the policy loader throws. Its message is meant to be printed as-is to an
// operator, so it always says where (file:line), what (field path), what is wrong, and what
// would be accepted instead.

export class PolicyError extends Error {
  readonly file: string;
  /** 1-based line in the policy file, or null when no line applies. */
  readonly line: number | null;
  /** Field path such as "allow[1].ports" or "credentials[0].secret". */
  readonly field: string;
  /** The "what is wrong" part on its own, without location or hint. */
  readonly problem: string;
  /** The "what is allowed" part on its own. */
  readonly hint: string;

  constructor(file: string, line: number | null, field: string, problem: string, hint: string) {
    const where = line === null ? file : `${file}:${line}`;
    super(`${where}: ${field}: ${problem}. ${hint}`);
    this.name = 'PolicyError';
    this.file = file;
    this.line = line;
    this.field = field;
    this.problem = problem;
    this.hint = hint;
  }
}
