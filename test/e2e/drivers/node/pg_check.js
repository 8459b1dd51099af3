// Driver check for node-postgres (pg, pg-cursor, pg-copy-streams), run by
// test/e2e/drivers_test.go against plain PostgreSQL and through shardproxy;
// it prints one deterministic line per step, which the test compares.
'use strict';
const { Client, Pool } = require('pg');
const Cursor = require('pg-cursor');
const { from: copyFrom, to: copyTo } = require('pg-copy-streams');
const { pipeline } = require('stream/promises');
const { Readable, Writable } = require('stream');

const dsn = process.argv[2];

async function step(name, fn) {
  let v;
  try {
    v = await fn();
  } catch (e) {
    v = ['error', e.code || e.message];
  }
  console.log(name + ': ' + JSON.stringify(v));
}

(async () => {
  const c = new Client({ connectionString: dsn });
  await c.connect();
  const q = async (text, values) => (await c.query(text, values)).rows;

  await step('parameterized select', () => q('SELECT id, name FROM users WHERE id = $1', [7]));
  await step('named prepared statement', async () => {
    const out = [];
    for (const id of [3, 13, 23]) {
      out.push((await c.query({ name: 'by_id', text: 'SELECT name FROM users WHERE id = $1', values: [id] })).rows[0]);
    }
    return out;
  });
  await step('array parameter', () => q({ text: 'SELECT id FROM users WHERE id = ANY($1) ORDER BY id', values: [[1, 2, 30, 40, 41]] }));
  await step('rowMode array', async () => (await c.query({ text: 'SELECT author_id, count(*) FROM posts GROUP BY author_id ORDER BY 2 DESC, 1 LIMIT 4', rowMode: 'array' })).rows);
  await step('multi-row insert returning', () => q('INSERT INTO users (id, name) VALUES ($1, $2), ($3, $4), ($5, $6) RETURNING id, name', [301, 'n1', 302, 'n2', 303, 'n3']));
  await step('transaction over shards', async () => {
    await c.query('BEGIN');
    await c.query('UPDATE users SET name = $1 WHERE id = $2', ['node tx', 301]);
    await c.query('UPDATE users SET name = $1 WHERE id = $2', ['node tx', 302]);
    await c.query('COMMIT');
    return q('SELECT id, name FROM users WHERE id IN (301, 302) ORDER BY id');
  });
  await step('failed transaction', async () => {
    await c.query('BEGIN');
    await c.query('UPDATE users SET name = $1 WHERE id = $2', ['lost', 301]);
    let code = '';
    try { await c.query('SELECT 1/0'); } catch (e) { code = e.code; }
    try { await c.query('SELECT 1'); } catch (e) { code += ' ' + e.code; }
    await c.query('ROLLBACK');
    return [code, await q('SELECT name FROM users WHERE id = 301')];
  });
  await step('cursor over shards', async () => {
    await c.query('BEGIN');
    const cur = c.query(new Cursor('SELECT id, name FROM users WHERE id < $1 ORDER BY name, id', [50]));
    const a = await cur.read(6);
    const b = await cur.read(100);
    await cur.close();
    await c.query('COMMIT');
    return [a, b.length];
  });
  await step('COPY from', async () => {
    const s = c.query(copyFrom('COPY users (id, name) FROM STDIN'));
    await pipeline(Readable.from(['401\tcopy a\n', '402\tcopy b\n', '403\tcopy c\n']), s);
    return [s.rowCount, await q('SELECT id, name FROM users WHERE id BETWEEN 401 AND 403 ORDER BY id')];
  });
  await step('COPY to', async () => {
    let text = '';
    const s = c.query(copyTo('COPY (SELECT id, name FROM users WHERE id BETWEEN 401 AND 403) TO STDOUT'));
    await pipeline(s, new Writable({ write(chunk, enc, cb) { text += chunk; cb(); } }));
    return text.split('\n').filter(Boolean).sort();
  });
  await step('COPY to, ordered over shards', async () => {
    let text = '';
    const s = c.query(copyTo('COPY (SELECT id, name FROM users ORDER BY name DESC, id LIMIT 12) TO STDOUT WITH (FORMAT csv, HEADER)'));
    await pipeline(s, new Writable({ write(chunk, enc, cb) { text += chunk; cb(); } }));
    return text;
  });
  await step('types', () => q("SELECT $1::jsonb AS j, $2::int[] AS a, 1.50::numeric AS n, '\\x0102'::bytea AS b, NULL::text AS z", [{ k: [1, 2] }, [3, 4]]));
  await step('error', () => q('SELECT nosuch FROM users WHERE id = $1', [1]));
  await c.end();

  const pool = new Pool({ connectionString: dsn, max: 8 });
  await step('pool in parallel', async () => {
    const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => pool.query('SELECT id FROM users WHERE id = $1', [i + 1])));
    return rs.map((r) => r.rows.length).reduce((x, y) => x + y, 0);
  });
  await pool.end();
})().catch((e) => { console.error(e); process.exit(1); });
