"""Driver check for asyncpg (run by test/e2e/drivers_test.go).

Runs the same application code against the DSN given as argv[1] and prints
one line per step: its name and its result (rows, a status, or the SQLSTATE
of the error). The Go test runs it against plain PostgreSQL and through
shardproxy over four shards and compares the lines, so every result must be
deterministic. asyncpg prepares every statement under its own name
(Parse, Describe, Flush, then Bind/Execute/Sync), caches the statements per
connection and retries one whose plan went stale after a table changed
shape; it cancels a query that runs past its timeout with a CancelRequest.
Its ids are 1000 and up (the other driver checks use lower ones).
"""
import asyncio
import io
import sys

import asyncpg

DSN = sys.argv[1]


def out(name, value):
    print(f"{name}: {value!r}", flush=True)


def plain(v):
    """Records become tuples, lists of records lists of tuples."""
    if isinstance(v, asyncpg.Record):
        return tuple(v.values())
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, tuple):
        return tuple(plain(x) for x in v)
    return v


async def step(name, coro):
    try:
        # A step that hangs (an answer the driver waits for never came)
        # shows as a difference instead of stalling the test.
        out(name, plain(await asyncio.wait_for(coro, 20)))
    except asyncpg.PostgresError as e:
        out(name, ("error", e.sqlstate))
    except asyncio.TimeoutError:
        out(name, ("timeout",))


async def main():
    c = await asyncpg.connect(DSN)
    await step("executemany over shards", c.executemany(
        "INSERT INTO users (id, name) VALUES ($1, $2)", [(i, f"apg{i}") for i in range(1000, 1020)]))
    await step("fetch by key", c.fetchrow("SELECT id, name FROM users WHERE id = $1", 1007))
    await step("array parameter", c.fetch("SELECT id FROM users WHERE id = ANY($1::bigint[]) ORDER BY id", [1001, 1002, 1019, 5]))
    await step("aggregate over shards", c.fetchrow("SELECT count(*), sum(id) FROM users WHERE id >= $1", 1000))

    # A statement the server rejects at Parse: asyncpg sends Parse, Describe
    # and Flush, and waits for the error before it sends Sync.
    await step("syntax error at Parse", c.fetch("SELEC 1"))
    await step("unknown column at Parse", c.fetch("SELECT nam FROM users WHERE id = $1", 1))
    await step("works after the errors", c.fetchval("SELECT name FROM users WHERE id = $1", 1003))

    async def tx():
        async with c.transaction():
            await c.execute("UPDATE users SET name = 'apg tx' WHERE id = $1", 1001)
            await c.execute("UPDATE users SET name = 'apg tx' WHERE id = $1", 1002)
        return await c.fetch("SELECT id, name FROM users WHERE id IN (1001, 1002) ORDER BY id")
    await step("transaction over shards", tx())

    async def tx_fails():
        try:
            async with c.transaction():
                await c.execute("UPDATE users SET name = 'lost' WHERE id = $1", 1003)
                await c.execute("SELECT 1/0")
        except asyncpg.PostgresError as e:
            return e.sqlstate, await c.fetchval("SELECT name FROM users WHERE id = $1", 1003)
    await step("failed transaction rolls back", tx_fails())

    async def nested():
        async with c.transaction():
            await c.execute("UPDATE users SET name = 'outer' WHERE id = $1", 1004)
            try:
                async with c.transaction():
                    await c.execute("UPDATE users SET name = 'inner' WHERE id = $1", 1005)
                    raise RuntimeError("roll the savepoint back")
            except RuntimeError:
                pass
        return await c.fetch("SELECT id, name FROM users WHERE id IN (1004, 1005) ORDER BY id")
    await step("savepoint", nested())

    async def cursor():
        async with c.transaction():
            ids = [r[0] async for r in c.cursor("SELECT id FROM users WHERE id >= $1 ORDER BY id", 1000, prefetch=6)]
            cur = await c.cursor("SELECT id FROM users WHERE id >= $1 ORDER BY id DESC", 1000)
            first = await cur.fetch(3)
            await cur.forward(2)
            after = await cur.fetchrow()
            cur = await c.cursor("SELECT id FROM users WHERE id >= $1 ORDER BY id", 1000)
            await cur.forward(4)  # MOVE before the portal's first Execute
            return ids, first, after, await cur.fetch(2)
    await step("cursors over shards", cursor())

    # SET LOCAL inside a transaction holds on every shard the transaction
    # reaches (sent as a simple query, then as a prepared statement).
    async def set_local():
        async with c.transaction():
            await c.execute("SET LOCAL statement_timeout = '8s'")
            a = await c.fetchval("SELECT count(*) FROM users WHERE id >= $1 AND current_setting('statement_timeout') = '8s'", 1000)
            await (await c.prepare("SET LOCAL lock_timeout = '3s'")).fetch()
            b = await c.fetchval("SELECT count(*) FROM users WHERE id >= $1 AND current_setting('lock_timeout') = '3s'", 1000)
        return a, b, await c.fetchval("SHOW statement_timeout")
    await step("SET LOCAL over shards", set_local())

    async def prepared():
        st = await c.prepare("SELECT name FROM users WHERE id = $1")
        return [await st.fetchval(i) for i in (1006, 1016, 1010)], [a.name for a in st.get_attributes()]
    await step("prepared statement", prepared())

    await step("binary copy into shards", c.copy_records_to_table(
        "users", records=[(1100 + i, f"copied{i}") for i in range(10)], columns=["id", "name"]))
    await step("copied rows", c.fetch("SELECT id, name FROM users WHERE id BETWEEN 1100 AND 1109 ORDER BY id"))

    async def copy_out():
        buf = io.BytesIO()
        await c.copy_from_query("SELECT id, name FROM users WHERE id BETWEEN $1 AND $2 ORDER BY id", 1100, 1104, output=buf)
        return buf.getvalue()
    await step("copy out of a query", copy_out())

    # The cached statement's plan goes stale when the table changes shape;
    # asyncpg prepares it again and retries once.
    await step("reference table before", c.fetch("SELECT * FROM countries ORDER BY code LIMIT 2"))
    await step("alter reference table", c.execute("ALTER TABLE countries ADD COLUMN extra int"))
    await step("cached statement after the change", c.fetch("SELECT * FROM countries ORDER BY code LIMIT 2"))
    await step("alter back", c.execute("ALTER TABLE countries DROP COLUMN extra"))
    await step("cached statement after the change back", c.fetch("SELECT * FROM countries ORDER BY code LIMIT 2"))

    await step("timeout cancels", c.fetchval("SELECT pg_sleep(10)", timeout=0.5))
    await step("works after the cancel", c.fetchval("SELECT count(*) FROM users WHERE id >= $1", 1000))
    await step("duplicate key", c.execute("INSERT INTO users (id, name) VALUES (1000, 'dup')"))
    await c.close()

    pool = await asyncpg.create_pool(DSN, min_size=2, max_size=4)

    async def worker(i):
        async with pool.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read"):
                return await conn.fetchval("SELECT name FROM users WHERE id = $1", i)
    await step("pool", asyncio.gather(*[worker(i) for i in range(1000, 1020)]))
    await pool.close()

    c = await asyncpg.connect(DSN, statement_cache_size=0)
    await step("unnamed statements", c.fetchrow("SELECT id, name FROM users WHERE id = $1", 1009))
    await step("unnamed statement error", c.fetchrow("SELECT nam FROM users WHERE id = $1", 1009))
    await step("cleanup", c.execute("DELETE FROM users WHERE id >= 1000"))
    await c.close()


asyncio.run(main())
