// Driver check for pgjdbc (Debian's libpostgresql-jdbc-java), run by
// test/e2e/drivers_test.go as a single-file Java program against plain
// PostgreSQL and through shardproxy; it prints one deterministic line per
// step, which the test compares. pgjdbc sends BEGIN in the same batch as a
// transaction's first statement, switches a statement to a named server
// statement after prepareThreshold (5) runs, sends a batch as many
// Bind/Execute pairs with one Sync, reads a ResultSet with a fetch size as
// a portal executed with a row limit across Syncs, and cancels a statement
// past its query timeout with a CancelRequest. Its ids are 4000 and up.
import java.sql.*;
import java.util.*;

public class JdbcCheck {
    interface Step { Object run() throws Exception; }

    static Connection c;

    static void step(String name, Step s) {
        Object v;
        try {
            v = s.run();
        } catch (SQLException e) {
            v = "error " + e.getSQLState();
        } catch (Exception e) {
            v = "exception " + e.getClass().getSimpleName();
        }
        System.out.println(name + ": " + v);
    }

    static List<String> rows(ResultSet rs) throws SQLException {
        List<String> out = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            StringBuilder b = new StringBuilder();
            for (int i = 1; i <= n; i++) {
                if (i > 1) b.append(",");
                b.append(rs.getString(i));
            }
            out.add(b.toString());
        }
        return out;
    }

    static List<String> query(String sql) throws SQLException {
        try (Statement st = c.createStatement()) {
            return rows(st.executeQuery(sql));
        }
    }

    public static void main(String[] args) throws Exception {
        c = DriverManager.getConnection(args[0]);
        step("batch insert over shards", () -> {
            try (PreparedStatement p = c.prepareStatement("INSERT INTO users (id, name) VALUES (?, ?)")) {
                for (int i = 4000; i < 4012; i++) {
                    p.setLong(1, i);
                    p.setString(2, "jdbc" + i);
                    p.addBatch();
                }
                return Arrays.toString(p.executeBatch());
            }
        });
        step("prepared past prepareThreshold", () -> {
            List<String> out = new ArrayList<>();
            try (PreparedStatement p = c.prepareStatement("SELECT name FROM users WHERE id = ?")) {
                for (long i = 4000; i < 4008; i++) {
                    p.setLong(1, i);
                    out.addAll(rows(p.executeQuery()));
                }
            }
            return out;
        });
        step("aggregate over shards", () -> query("SELECT count(*), sum(id) FROM users WHERE id >= 4000"));
        step("generated keys", () -> {
            try (PreparedStatement p = c.prepareStatement("INSERT INTO posts (author_id, body) VALUES (?, ?)", Statement.RETURN_GENERATED_KEYS)) {
                p.setLong(1, 4001);
                p.setString(2, "jdbc post");
                p.executeUpdate();
                ResultSet rs = p.getGeneratedKeys();
                rs.next();
                return rs.getLong("author_id") + " " + (rs.getLong("id") > 0) + " " + rs.getString("body");
            }
        });
        step("transaction over shards", () -> {
            c.setAutoCommit(false);
            try (PreparedStatement p = c.prepareStatement("UPDATE users SET name = ? WHERE id = ?")) {
                for (long id = 4000; id < 4004; id++) {
                    p.setString(1, "jdbc tx");
                    p.setLong(2, id);
                    p.executeUpdate();
                }
            }
            c.commit();
            c.setAutoCommit(true);
            return query("SELECT id, name FROM users WHERE id BETWEEN 4000 AND 4004 ORDER BY id");
        });
        step("savepoint", () -> {
            c.setAutoCommit(false);
            try (Statement st = c.createStatement()) {
                st.executeUpdate("UPDATE users SET name = 'outer' WHERE id = 4005");
                Savepoint sp = c.setSavepoint();
                st.executeUpdate("UPDATE users SET name = 'inner' WHERE id = 4006");
                c.rollback(sp);
            }
            c.commit();
            c.setAutoCommit(true);
            return query("SELECT id, name FROM users WHERE id IN (4005, 4006) ORDER BY id");
        });
        step("fetch size over shards, a write, rollback", () -> {
            c.setAutoCommit(false);
            List<String> seen = new ArrayList<>();
            try (Statement st = c.createStatement()) {
                st.setFetchSize(3);
                ResultSet rs = st.executeQuery("SELECT id FROM users WHERE id >= 4000 ORDER BY id DESC");
                for (int i = 0; i < 5 && rs.next(); i++) seen.add(rs.getString(1));
                try (Statement w = c.createStatement()) {
                    w.executeUpdate("UPDATE users SET name = 'rolled back' WHERE id = 4007");
                }
                while (rs.next()) seen.add(rs.getString(1));
            }
            c.rollback();
            c.setAutoCommit(true);
            return seen + " " + query("SELECT name FROM users WHERE id = 4007");
        });
        step("WITH HOLD cursor dropped by rollback()", () -> {
            c.setAutoCommit(false);
            try (Statement st = c.createStatement()) {
                st.execute("DECLARE held CURSOR WITH HOLD FOR SELECT id FROM users WHERE id >= 4000 ORDER BY id");
            }
            c.rollback();
            c.setAutoCommit(true);
            return query("FETCH 1 FROM held");
        });
        step("WITH HOLD cursor kept by commit()", () -> {
            c.setAutoCommit(false);
            try (Statement st = c.createStatement()) {
                st.execute("DECLARE kept CURSOR WITH HOLD FOR SELECT id FROM users WHERE id >= 4000 ORDER BY id");
            }
            c.commit();
            c.setAutoCommit(true);
            List<String> r = query("FETCH 2 FROM kept");
            try (Statement st = c.createStatement()) {
                st.execute("CLOSE kept");
            }
            return r;
        });
        step("select for update", () -> {
            c.setAutoCommit(false);
            List<String> r = query("SELECT id FROM users WHERE id = 4008 FOR UPDATE");
            c.commit();
            c.setAutoCommit(true);
            return r;
        });
        step("array parameter", () -> {
            try (PreparedStatement p = c.prepareStatement("SELECT id FROM users WHERE id = ANY(?) ORDER BY id")) {
                p.setArray(1, c.createArrayOf("bigint", new Long[]{4009L, 4001L, 1L}));
                return rows(p.executeQuery());
            }
        });
        step("metadata", () -> {
            ResultSet rs = c.getMetaData().getColumns(null, "public", "users", null);
            List<String> cols = new ArrayList<>();
            while (rs.next()) cols.add(rs.getString("COLUMN_NAME"));
            return cols;
        });
        step("syntax error", () -> query("SELEC 1"));
        step("error in a transaction", () -> {
            c.setAutoCommit(false);
            String code = "";
            try (Statement st = c.createStatement()) {
                st.executeUpdate("UPDATE users SET name = 'lost' WHERE id = 4009");
                st.executeQuery("SELECT 1/0");
            } catch (SQLException e) {
                code = e.getSQLState();
            }
            c.rollback();
            c.setAutoCommit(true);
            return code + " " + query("SELECT name FROM users WHERE id = 4009");
        });
        step("query timeout cancels", () -> {
            try (Statement st = c.createStatement()) {
                st.setQueryTimeout(1);
                st.executeQuery("SELECT pg_sleep(10)");
                return "not cancelled";
            } catch (SQLException e) {
                return e.getSQLState();
            }
        });
        step("works after the cancel", () -> query("SELECT count(*) FROM users WHERE id >= 4000"));
        step("cleanup", () -> {
            try (Statement st = c.createStatement()) {
                return st.executeUpdate("DELETE FROM posts WHERE author_id >= 4000") + " " + st.executeUpdate("DELETE FROM users WHERE id >= 4000");
            }
        });
        c.close();
    }
}
