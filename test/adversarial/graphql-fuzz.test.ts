// A seeded fuzz run of the GraphQL decision (no sockets): documents that run an allowed or a
// refused mutation in every spelling (aliases, fragments, inline fragments, several operations),
// mutated token by token and byte by byte, sent with each operationName a client could pick.
//
// Asserted for every case: decideGraphql never throws and answers quickly; and whatever it lets
// through, graphql-js's own executor, run on the same document for every operation it could
// pick, never calls the refused mutation's resolver.
//
// Reproduce with another seed: AIRLOCK_FUZZ_SEED=1234 npx vitest run test/adversarial/graphql-fuzz.test.ts
import { describe, expect, it } from 'vitest';
import { buildSchema, execute, Kind, parse, type DocumentNode } from 'graphql';
import { decideGraphql } from '../../src/policy/index.js';
import { mulberry32 } from './helpers.js';

const SEED = process.env.AIRLOCK_FUZZ_SEED ? Number(process.env.AIRLOCK_FUZZ_SEED) : 0x6a9_1c0d;
const CASES = 3000;

const schema = buildSchema(`
  type Query { viewer: User, a: Int }
  type User { login: String }
  type Mutation { addComment(input: String): Int, deleteRepository(input: String): Int }
  type Subscription { s: Int }
`);

const SEEDS = [
  'query Me { viewer { login } }',
  'mutation { addComment(input: "x") }',
  'mutation { deleteRepository(input: "x") }',
  'mutation { addComment: deleteRepository(input: "x") }',
  'mutation M { ...F } fragment F on Mutation { deleteRepository }',
  'mutation { ... on Mutation { ... { deleteRepository } } }',
  'query Safe { a } mutation Evil { deleteRepository }',
  'mutation A { addComment } mutation B { deleteRepository }',
  'mutation { ...A } fragment A on Mutation { ...B addComment } fragment B on Mutation { ...A deleteRepository @skip(if: false) }',
];
const TOKENS = ['mutation', 'query', 'subscription', '{', '}', '...', 'on', 'Mutation', 'fragment', 'F', 'A', 'deleteRepository', 'addComment', ':', 'x:', '(', ')', '#', '"', '\n', '@skip(if: true)', ',', '\\u0000', 'Evil'];

function mutate(rand: () => number, doc: string): string {
  let s = doc;
  const steps = Math.floor(rand() * 3);
  for (let i = 0; i < steps; i++) {
    const at = Math.floor(rand() * (s.length + 1));
    const pick = rand();
    if (pick < 0.35) s = s.slice(0, at) + ' ' + TOKENS[Math.floor(rand() * TOKENS.length)] + ' ' + s.slice(at);
    else if (pick < 0.55) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rand() * 8));
    else if (pick < 0.7) s = s.slice(0, at) + String.fromCharCode(Math.floor(rand() * 128)) + s.slice(at + 1);
    else if (pick < 0.85) {
      const from = Math.floor(rand() * s.length);
      s = s.slice(0, at) + s.slice(from, from + Math.floor(rand() * 30)) + s.slice(at);
    } else s = s + ' ' + SEEDS[Math.floor(rand() * SEEDS.length)];
  }
  return s;
}

/** Whether graphql-js would call deleteRepository for any operation a client could pick. */
function runsDelete(doc: DocumentNode): boolean {
  let called = false;
  const rootValue = { deleteRepository: () => ((called = true), 1), addComment: () => 1, a: () => 1, viewer: () => ({ login: 'x' }) };
  const names = doc.definitions.flatMap((d) => (d.kind === Kind.OPERATION_DEFINITION ? [d.name?.value] : []));
  for (const operationName of [undefined, ...names]) {
    try {
      void execute({ schema, document: doc, rootValue, operationName: operationName ?? undefined });
    } catch {
      // an executor error is no call
    }
  }
  return called;
}

describe('GraphQL decision fuzz', () => {
  it(`${CASES} mutated documents: never throws, and nothing it allows runs a refused mutation`, () => {
    const rand = mulberry32(SEED);
    let allowed = 0;
    let refused = 0;
    let slowest = 0;
    for (let i = 0; i < CASES; i++) {
      const query = mutate(rand, SEEDS[Math.floor(rand() * SEEDS.length)]!);
      const names = ['Me', 'Safe', 'Evil', 'A', 'B', 'M', ''];
      const opName = rand() < 0.7 ? undefined : names[Math.floor(rand() * names.length)];
      let body = JSON.stringify({ query, operationName: opName });
      if (rand() < 0.05) body = body.slice(0, Math.floor(rand() * body.length));
      const start = performance.now();
      const verdict = decideGraphql(body, ['addComment'], 'allow[0]');
      slowest = Math.max(slowest, performance.now() - start);
      if (!verdict.ok) {
        refused++;
        expect(verdict.message.length).toBeGreaterThan(0);
        continue;
      }
      allowed++;
      const doc = parse(query);
      expect(runsDelete(doc), `seed ${SEED} case ${i}: ${query}`).toBe(false);
    }
    // Both outcomes are exercised, and no document is slow to decide.
    expect(allowed).toBeGreaterThan(CASES / 20);
    expect(refused).toBeGreaterThan(CASES / 20);
    expect(slowest).toBeLessThan(200);
  });

  it('the oracle sees a refused mutation run when one is hidden', () => {
    for (const q of SEEDS.slice(2)) expect(runsDelete(parse(q)), q).toBe(true);
  });
});
