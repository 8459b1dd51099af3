"""Driver check for psycopg 3 and psycopg2 (run by test/e2e/drivers_test.go).

Runs the same application code against the DSN given as argv[1] and prints
one line per step: its name and its result (rows, a row count, or the
SQLSTATE of the error). The Go test runs it once against plain PostgreSQL
and once through shardproxy over four shards and compares the lines, so
every result must be deterministic: explicit ids, ORDER BY or sorted().
"""
import io
import sys

import psycopg
import psycopg2
import psycopg2.extras

DSN = sys.argv[1]


def out(name, value):
    print(f"{name}: {value!r}", flush=True)


def step(name, fn):
    try:
        out(name, fn())
    except psycopg.Error as e:
        out(name, ("error", e.sqlstate))
    except psycopg2.Error as e:
        out(name, ("error", e.pgcode))


c = psycopg.connect(DSN, autocommit=True)
q = c.execute


def users():
    return q("SELECT count(*), coalesce(sum(id), 0) FROM users").fetchone()


# executemany in autocommit mode: psycopg 3 pipelines the rows with one Sync
# (one implicit transaction, here over every shard).
def executemany_users():
    cur = c.cursor()
    cur.executemany("INSERT INTO users (id, name) VALUES (%s, %s)", [(i, f"user{i}") for i in range(1, 41)])
    return cur.rowcount, users()


step("executemany over shards", executemany_users)


def executemany_duplicate():
    cur = c.cursor()
    cur.executemany("INSERT INTO users (id, name) VALUES (%s, %s)",
                    [(i, f"user{i}") for i in range(41, 61)] + [(7, "dup")] + [(i, "x") for i in range(61, 70)])


step("executemany with a duplicate", executemany_duplicate)
step("nothing of the failed executemany", users)


def executemany_posts():
    cur = c.cursor()
    cur.executemany("INSERT INTO posts (author_id, id, body) VALUES (%s, %s, %s)",
                    [(i % 40 + 1, i, f"post {i} by {i % 40 + 1}") for i in range(1, 201)])
    return cur.rowcount


step("executemany posts", executemany_posts)


def transaction_commit():
    with c.transaction():
        q("UPDATE users SET name = 'tx' WHERE id = %s", (3,))
        q("UPDATE users SET name = 'tx' WHERE id = %s", (4,))
        q("INSERT INTO posts (author_id, id, body) VALUES (%s, %s, %s)", (5, 1001, "in tx"))
    return q("SELECT id, name FROM users WHERE id IN (3, 4) ORDER BY id").fetchall()


step("transaction commits", transaction_commit)


def transaction_rollback():
    try:
        with c.transaction():
            q("UPDATE users SET name = 'lost' WHERE id = %s", (3,))
            q("UPDATE users SET name = 'lost' WHERE id = %s", (9,))
            q("SELECT 1/0")
    except psycopg.errors.DivisionByZero:
        pass
    return q("SELECT id, name FROM users WHERE id IN (3, 9) ORDER BY id").fetchall()


step("transaction rolls back", transaction_rollback)


def nested_transactions():
    # psycopg 3 nests transaction() with SAVEPOINT / ROLLBACK TO / RELEASE,
    # all through the extended protocol, here over several shards.
    with c.transaction():
        q("UPDATE users SET name = 'outer' WHERE id = %s", (13,))
        try:
            with c.transaction():
                q("UPDATE users SET name = 'inner' WHERE id = %s", (14,))
                q("UPDATE users SET name = 'inner' WHERE id = %s", (15,))
                q("SELECT 1/0")
        except psycopg.errors.DivisionByZero:
            pass
        with c.transaction():
            q("UPDATE users SET name = 'kept' WHERE id = %s", (16,))
        inside = sorted(q("SELECT id, name FROM users WHERE id BETWEEN 13 AND 16").fetchall())
    return inside, q("SELECT id, name FROM users WHERE id BETWEEN 13 AND 16 ORDER BY id").fetchall()


step("nested transactions (savepoints)", nested_transactions)


def server_cursor(sql, params=None):
    def run():
        with c.transaction():
            cur = c.cursor(name="sc")
            cur.execute(sql, params)
            first = cur.fetchmany(7)
            rest = cur.fetchall()
            return [d.name for d in cur.description], first, rest
    return run


step("server cursor over shards", server_cursor("SELECT id, name FROM users ORDER BY name DESC, id LIMIT 30"))
step("server cursor on one shard", server_cursor("SELECT author_id, id, body FROM posts WHERE author_id = %s ORDER BY id", (7,)))
step("server cursor aggregate", server_cursor("SELECT author_id, count(*) FROM posts GROUP BY author_id ORDER BY 2 DESC, 1 LIMIT 10"))


def prepared_statements():
    # Server-side prepared statements (prepare=True), a failed transaction
    # (after which psycopg sends DEALLOCATE ALL) and cache evictions
    # (DEALLOCATE name) — all through the extended protocol.
    got = []
    for i in range(3):
        got.append(q("SELECT name FROM users WHERE id = %s", (i + 1,), prepare=True).fetchone())
    try:
        with c.transaction():
            q("SELECT name FROM users WHERE id = %s", (1,), prepare=True)
            q("SELECT 1/0", prepare=True)
    except psycopg.errors.DivisionByZero:
        pass
    got.append(q("SELECT name FROM users WHERE id = %s", (2,), prepare=True).fetchone())
    c.prepared_max = 2
    for i in range(5):
        got.append(q(f"SELECT {i} AS n, name FROM users WHERE id = %s", (i + 10,), prepare=True).fetchone())
    got.append(q("SELECT name FROM users WHERE id = %s", (3,), prepare=True).fetchone())
    return got


step("prepared statements", prepared_statements)


def pipeline_reads():
    with c.pipeline():
        curs = [c.execute("SELECT id, name FROM users WHERE id = %s", (i,)) for i in range(1, 21)]
    return [cur.fetchone() for cur in curs]


step("pipeline reads", pipeline_reads)


def pipeline_error():
    try:
        with c.pipeline():
            c.execute("UPDATE users SET name = 'pipe' WHERE id = %s", (11,))
            c.execute("UPDATE users SET name = 'pipe' WHERE id = %s", (12,))
            c.execute("SELECT 1/0")
    except psycopg.errors.DivisionByZero:
        pass
    return q("SELECT id, name FROM users WHERE id IN (11, 12) ORDER BY id").fetchall()


step("pipeline error rolls back", pipeline_error)


def binary_copy_in():
    cur = c.cursor()
    with cur.copy("COPY users (id, name) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["int8", "text"])
        for i in range(100, 131):
            cp.write_row((i, f"copied{i}"))
    return cur.rowcount, users()


step("binary COPY in", binary_copy_in)


def text_copy_in():
    cur = c.cursor()
    with cur.copy("COPY users (id, name) FROM STDIN") as cp:
        for i in range(200, 221):
            cp.write_row((i, f"text\tcopy {i}"))
    return cur.rowcount, users()


step("text COPY in", text_copy_in)


def copy_out():
    cur = c.cursor()
    with cur.copy("COPY (SELECT id, name FROM users WHERE id BETWEEN 100 AND 110) TO STDOUT") as cp:
        return sorted(cp.rows())


step("COPY out", copy_out)


def binary_copy_out(sql):
    def run():
        cur = c.cursor()
        with cur.copy(sql) as cp:
            cp.set_types(["int8", "text"])
            return sorted(cp.rows())
    return run


step("binary COPY out of a table", binary_copy_out("COPY users (id, name) TO STDOUT (FORMAT BINARY)"))
step("binary COPY out of a query", binary_copy_out("COPY (SELECT id, name FROM users WHERE id BETWEEN 5 AND 120) TO STDOUT (FORMAT BINARY)"))


def binary_results():
    cur = c.cursor(binary=True)
    cur.execute("SELECT id, name, id * 1.5 AS half, ARRAY[id, id + 1] AS pair FROM users WHERE id = ANY(%s) ORDER BY id", ([2, 5, 17, 33],))
    return cur.fetchall()


step("binary results", binary_results)
step("cross-shard aggregate", lambda: q("SELECT count(*), min(id), max(id), sum(id)::int8 FROM posts").fetchone())
step("cross-shard order", lambda: q("SELECT author_id, id FROM posts ORDER BY body DESC LIMIT 5").fetchall())
step("errors keep their SQLSTATE", lambda: q("SELECT nosuchcolumn FROM users WHERE id = 1").fetchall())
c.close()

# psycopg2: implicit transactions, named cursors (DECLARE/FETCH),
# execute_values, copy_expert.
c2 = psycopg2.connect(DSN)
cur2 = c2.cursor()


def p2_implicit_tx():
    cur2.execute("UPDATE users SET name = %s WHERE id = %s", ("p2", 21))
    cur2.execute("UPDATE users SET name = %s WHERE id = %s", ("p2", 22))
    c2.commit()
    cur2.execute("UPDATE users SET name = %s WHERE id = %s", ("p2 lost", 21))
    c2.rollback()
    cur2.execute("SELECT id, name FROM users WHERE id IN (21, 22) ORDER BY id")
    rows = cur2.fetchall()
    c2.commit()
    return rows


step("psycopg2 implicit transactions", p2_implicit_tx)


def p2_named_cursor():
    nc = c2.cursor(name="srv")
    nc.itersize = 9
    nc.execute("SELECT id, name FROM users WHERE id < 60 ORDER BY id DESC")
    rows = list(nc)
    nc.close()
    c2.commit()
    return len(rows), rows[:3], rows[-3:]


step("psycopg2 named cursor", p2_named_cursor)


# A named cursor WITH HOLD outside a transaction (what Django's
# QuerySet.iterator() does in autocommit mode): the proxy materializes it.
def p2_named_cursor_with_hold():
    c2.autocommit = True
    try:
        nc = c2.cursor(name="held", withhold=True)
        nc.itersize = 7
        nc.execute("SELECT id, name FROM users WHERE id < 60 ORDER BY name, id")
        first = nc.fetchmany(4)
        nc.scroll(3)  # MOVE 3
        rest = list(nc)
        nc.close()
        return first, len(rest), rest[-2:]
    finally:
        c2.autocommit = False


step("psycopg2 named cursor WITH HOLD", p2_named_cursor_with_hold)


def held_cursor_rolled_back():
    c2.autocommit = True
    cur = c2.cursor()
    try:
        cur.execute("BEGIN")
        cur.execute("DECLARE gone CURSOR WITH HOLD FOR SELECT id FROM users ORDER BY id")
        cur.execute("ROLLBACK")
        cur.execute("FETCH 1 FROM gone")
        return cur.fetchall()
    finally:
        c2.autocommit = False


step("WITH HOLD cursor of a rolled-back transaction", held_cursor_rolled_back)


def p3_server_cursor_with_hold():
    with psycopg.connect(DSN, autocommit=True) as conn:
        with conn.cursor("held3", withhold=True) as cur:
            cur.itersize = 5
            cur.execute("SELECT id, name FROM users WHERE id < %s ORDER BY id", (40,))
            first = cur.fetchmany(3)
            cur.scroll(2)
            return first, cur.fetchone(), len(cur.fetchall()), [d.name for d in cur.description]


step("psycopg 3 server cursor WITH HOLD", p3_server_cursor_with_hold)


def p2_execute_values():
    psycopg2.extras.execute_values(cur2, "INSERT INTO posts (author_id, id, body) VALUES %s",
                                   [(i % 40 + 1, 2000 + i, "values") for i in range(50)])
    n = cur2.rowcount
    c2.commit()
    cur2.execute("SELECT count(*) FROM posts WHERE body = 'values'")
    r = cur2.fetchone()
    c2.commit()
    return n, r


step("psycopg2 execute_values", p2_execute_values)


def p2_copy_expert():
    f = io.StringIO()
    cur2.copy_expert("COPY (SELECT id, name FROM users WHERE id < 8) TO STDOUT WITH CSV", f)
    c2.commit()
    return sorted(f.getvalue().splitlines())


step("psycopg2 copy_expert", p2_copy_expert)
c2.close()
