package e2e

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDrivers runs application code written for psycopg 3, psycopg2,
// asyncpg, node-postgres, postgres.js, pgjdbc and the SQLAlchemy, Django and
// Sequelize ORMs (test/e2e/drivers) once against plain PostgreSQL and once
// through shardproxy over four shards, and compares every step's result:
// rows, row counts and SQLSTATEs. The steps are what those drivers do on
// their own — psycopg 3's pipelined executemany and transaction(),
// server-side cursors (DECLARE, then Describe of the cursor's portal),
// prepared statements with DEALLOCATE, binary COPY; node-postgres' named
// statements, pg-cursor and pg-copy-streams. `make test` installs the
// drivers (test/scripts/ensure-drivers.sh).
func TestDrivers(t *testing.T) {
	python := driverPython(t)
	nodeDir, err := filepath.Abs("drivers/node")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"pg", "postgres", "sequelize"} {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", m)); err != nil {
			t.Fatalf("%s is not installed in %s: run bash test/scripts/ensure-drivers.sh (make test does)", m, nodeDir)
		}
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: run bash test/scripts/ensure-drivers.sh (make test does)")
	}
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatal("java not found: run bash test/scripts/ensure-drivers.sh (make test does)")
	}
	if _, err := os.Stat(jdbcJar); err != nil {
		t.Fatalf("pgjdbc is not installed (%s): run bash test/scripts/ensure-drivers.sh (make test does)", jdbcJar)
	}
	env := startSharded(t)
	ctx := testCtx(t, 4*time.Minute)
	mustExec(t, ctx, env.direct[env.names[0]], "CREATE DATABASE drivers_reference")
	refDSN := env.cluster.Shards[0].Primary.DSN("drivers_reference")
	proxyDSN := env.proxy.dsn("postgres")
	for _, dsn := range []string{refDSN, proxyDSN} {
		conn := connectPgx(t, ctx, dsn)
		for _, stmt := range strings.Split(routingSchema, ";") {
			mustExec(t, ctx, conn, stmt)
		}
	}
	scripts := []struct {
		name string
		cmd  func(dsn string) *exec.Cmd
	}{
		{"psycopg", func(dsn string) *exec.Cmd {
			return exec.CommandContext(ctx, python, "drivers/psycopg_check.py", dsn)
		}},
		{"asyncpg", func(dsn string) *exec.Cmd {
			return exec.CommandContext(ctx, python, "drivers/asyncpg_check.py", dsn)
		}},
		{"SQLAlchemy", func(dsn string) *exec.Cmd {
			return exec.CommandContext(ctx, python, "drivers/sqlalchemy_check.py", dsn)
		}},
		{"Django", func(dsn string) *exec.Cmd {
			return exec.CommandContext(ctx, python, "drivers/django_check.py", dsn)
		}},
		{"node-postgres", func(dsn string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, node, "pg_check.js", dsn)
			cmd.Dir = nodeDir
			return cmd
		}},
		{"postgres.js", func(dsn string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, node, "postgresjs_check.js", dsn)
			cmd.Dir = nodeDir
			return cmd
		}},
		{"pgjdbc", func(dsn string) *exec.Cmd {
			return exec.CommandContext(ctx, java, "-cp", jdbcJar, "drivers/jdbc/JdbcCheck.java", jdbcURL(dsn))
		}},
		{"Sequelize", func(dsn string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, node, "sequelize_check.js", dsn)
			cmd.Dir = nodeDir
			return cmd
		}},
	}
	// In order: each script reads what the ones before wrote, on both sides.
	for _, s := range scripts {
		want := runDriverScript(t, s.cmd(refDSN))
		got := runDriverScript(t, s.cmd(proxyDSN))
		t.Logf("%s through shardproxy:\n%s", s.name, strings.Join(got, "\n"))
		if len(want) < 10 {
			t.Fatalf("%s: only %d steps ran against PostgreSQL:\n%s", s.name, len(want), strings.Join(want, "\n"))
		}
		for i := range max(len(want), len(got)) {
			var g, w string
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Errorf("%s step %d differs:\n through shardproxy: %s\n PostgreSQL:         %s", s.name, i+1, g, w)
			}
		}
	}
}

// jdbcJar is pgjdbc as Debian's libpostgresql-jdbc-java installs it.
const jdbcJar = "/usr/share/java/postgresql.jar"

// jdbcURL turns a postgres:// URL into pgjdbc's form.
func jdbcURL(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	user := "postgres"
	if u.User != nil {
		user = u.User.Username()
	}
	return "jdbc:postgresql://" + u.Host + u.Path + "?user=" + url.QueryEscape(user)
}

// runDriverScript runs cmd and returns its output lines; the script failing
// fails the test.
func runDriverScript(t *testing.T, cmd *exec.Cmd) []string {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s\n%s", strings.Join(cmd.Args, " "), err, out, stderr.String())
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}

// driverPython returns a Python that has psycopg 3 and psycopg2 (the
// system one gets them from Debian packages; a pyenv shim on PATH may not).
func driverPython(t *testing.T) string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := exec.CommandContext(ctx, p, "-c", "import psycopg, psycopg2, asyncpg, django, sqlalchemy").Run()
		cancel()
		if err == nil {
			return p
		}
	}
	t.Fatal("no python3 with psycopg, psycopg2, asyncpg, django and sqlalchemy: run bash test/scripts/ensure-drivers.sh (make test does)")
	return ""
}
