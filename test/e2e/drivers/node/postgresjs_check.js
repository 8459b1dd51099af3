// Driver check for postgres.js (the "postgres" package), run by
// test/e2e/drivers_test.go against plain PostgreSQL and through shardproxy;
// it prints one deterministic line per step, which the test compares.
// postgres.js prepares named statements, pipelines queries sent at once on
// one connection, runs unsafe() text with the simple protocol (several
// statements in one string) and opens transactions with sql.begin. Its ids
// are 2000 and up (the other driver checks use lower ones).
'use strict';
const postgres = require('postgres');

const sql = postgres(process.argv[2], { max: 2, onnotice: () => {} });

async function step(name, fn) {
  let v;
  try {
    v = await fn();
  } catch (e) {
    v = ['error', e.code || e.message];
  }
  console.log(name + ': ' + JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? x.toString() : x)));
}

(async () => {
  await step('insert helper over shards', () => sql`INSERT INTO users ${sql([2001, 2002, 2003, 2004].map((id) => ({ id, name: 'pjs' + id })))} RETURNING id, name`);
  await step('select by key', () => sql`SELECT id, name FROM users WHERE id = ${2002}`);
  await step('in list', () => sql`SELECT id FROM users WHERE id IN ${sql([2001, 2003, 5])} ORDER BY id`);
  await step('aggregate over shards', () => sql`SELECT count(*)::int AS n, sum(id)::int AS s FROM users WHERE id >= ${2000}`);
  await step('pipelined queries', () => Promise.all([2001, 2002, 2003, 2004].map((id) => sql`SELECT name FROM users WHERE id = ${id}`)));
  await step('transaction over shards', async () => {
    await sql.begin(async (tx) => {
      await tx`UPDATE users SET name = 'pjs tx' WHERE id = ${2001}`;
      await tx`UPDATE users SET name = 'pjs tx' WHERE id = ${2002}`;
    });
    return sql`SELECT id, name FROM users WHERE id IN (2001, 2002) ORDER BY id`;
  });
  await step('failed transaction rolls back', async () => {
    let code;
    try {
      await sql.begin(async (tx) => {
        await tx`UPDATE users SET name = 'lost' WHERE id = ${2003}`;
        await tx`SELECT 1/0`;
      });
    } catch (e) {
      code = e.code;
    }
    return [code, await sql`SELECT name FROM users WHERE id = 2003`];
  });
  await step('savepoint', () => sql.begin(async (tx) => {
    await tx`UPDATE users SET name = 'outer' WHERE id = ${2004}`;
    try {
      await tx.savepoint(async (sp) => {
        await sp`UPDATE users SET name = 'inner' WHERE id = ${2003}`;
        throw new Error('roll the savepoint back');
      });
    } catch (e) { /* expected */ }
    return tx`SELECT id, name FROM users WHERE id IN (2003, 2004) ORDER BY id`;
  }));
  await step('cursor over shards', async () => {
    const sizes = [];
    for await (const rows of sql`SELECT id FROM users WHERE id >= ${2000} ORDER BY id`.cursor(3)) sizes.push(rows.map((r) => r.id));
    return sizes;
  });
  await step('unsafe string of statements over shards', () => sql.unsafe("UPDATE users SET name = 'multi' WHERE id = 2001; UPDATE users SET name = 'multi' WHERE id = 2002; SELECT id, name FROM users WHERE id >= 2000 ORDER BY id"));
  await step('unsafe string failing', async () => {
    let code;
    try {
      await sql.unsafe("UPDATE users SET name = 'lost' WHERE id = 2001; UPDATE users SET name = 'lost' WHERE id = 2002; SELECT 1/0");
    } catch (e) {
      code = e.code;
    }
    return [code, await sql`SELECT id, name FROM users WHERE id IN (2001, 2002) ORDER BY id`];
  });
  await step('syntax error', () => sql`SELEC 1`);
  await step('describe', async () => {
    const r = await sql`SELECT id, name FROM users WHERE id = ${2001}`.describe();
    return [r.types, r.columns.map((c) => c.name)];
  });
  await step('copy in', async () => {
    const { pipeline } = require('stream/promises');
    const { Readable } = require('stream');
    const w = await sql`COPY users (id, name) FROM STDIN`.writable();
    await pipeline(Readable.from(['2101\tcopied a\n', '2102\tcopied b\n', '2103\tcopied c\n']), w);
    return sql`SELECT id, name FROM users WHERE id > 2100 ORDER BY id`;
  });
  await step('duplicate key', () => sql`INSERT INTO users (id, name) VALUES (${2001}, 'dup')`);
  await step('cleanup', async () => (await sql`DELETE FROM users WHERE id >= 2000`).count);
  await sql.end();
})();
