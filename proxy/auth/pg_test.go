package auth

import (
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// pgBinDir returns the newest /usr/lib/postgresql/*/bin with initdb.
func pgBinDir(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	t.Fatal("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
	return ""
}

// runAsPostgres prepares cmd to run as the postgres OS user when we are
// root (PostgreSQL refuses to run as root).
func runAsPostgres(t *testing.T, cmd *exec.Cmd, dirs ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root needs a postgres OS user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, d := range dirs {
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

// TestStoredPasswordsFromPostgres has a real PostgreSQL (single-user mode,
// no port) hash passwords with CREATE ROLE and checks that ParseCredential
// reads them and that a real client can log in against them.
func TestStoredPasswordsFromPostgres(t *testing.T) {
	bin := pgBinDir(t)
	base, err := os.MkdirTemp("", "authpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(base, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	runAsPostgres(t, initdb, data)
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	script := "SET password_encryption = 'scram-sha-256'\n" +
		"CREATE ROLE s PASSWORD 'y-secret'\n" +
		"CREATE ROLE u PASSWORD 'pässwörd'\n" +
		"SET password_encryption = 'md5'\n" +
		"CREATE ROLE m PASSWORD 'y-secret'\n" +
		"SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ('s', 'u', 'm')\n"
	single := exec.Command(filepath.Join(bin, "postgres"), "--single", "-D", data, "-c", "fsync=off", "postgres")
	single.Stdin = bytes.NewBufferString(script)
	runAsPostgres(t, single)
	out, err := single.CombinedOutput()
	if err != nil {
		t.Fatalf("postgres --single: %v\n%s", err, out)
	}
	// Rows print as: 1: rolname = "s" ... 2: rolpassword = "SCRAM-SHA-256$..."
	re := regexp.MustCompile(`rolname = "(\w+)"[^\n]*\n[^\n]*rolpassword = "([^"]+)"`)
	stored := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		stored[m[1]] = m[2]
	}
	if len(stored) != 3 {
		t.Fatalf("could not read the three roles from:\n%s", out)
	}
	if want := MD5Hash("m", "y-secret"); stored["m"] != want {
		t.Fatalf("md5 from PostgreSQL %s, ours %s", stored["m"], want)
	}
	for _, tc := range []struct{ role, method, password string }{
		{"s", MethodSCRAM, "y-secret"},
		{"u", MethodSCRAM, "pässwörd"},
		{"m", MethodMD5, "y-secret"},
	} {
		cred := mustCred(t, tc.role, stored[tc.role])
		if tc.method == MethodSCRAM {
			if cred.SCRAM == nil || cred.SCRAM.String() != stored[tc.role] {
				t.Fatalf("%s: %q did not parse as a SCRAM verifier (%+v)", tc.role, stored[tc.role], cred)
			}
			// Deriving with PostgreSQL's salt and iterations gives its keys.
			v, err := DeriveSCRAMVerifier(tc.password, cred.SCRAM.Salt, cred.SCRAM.Iterations)
			if err != nil {
				t.Fatal(err)
			}
			if v.String() != stored[tc.role] {
				t.Fatalf("%s: derived %s, PostgreSQL stored %s", tc.role, v, stored[tc.role])
			}
		} else if cred.MD5 == "" {
			t.Fatalf("%s: %q did not parse as md5", tc.role, stored[tc.role])
		}
		srv := startServer(t, func(be *pgproto3.Backend, user string) error {
			return Authenticate(be, tc.method, user, cred)
		})
		if err := srv.connect(t, tc.role, tc.password); err != nil {
			t.Fatalf("%s: %v", tc.role, err)
		}
		if err := srv.result(t); err != nil {
			t.Fatal(err)
		}
		if err := srv.connect(t, tc.role, tc.password+"x"); err == nil {
			t.Fatalf("%s: wrong password accepted", tc.role)
		}
		srv.result(t)
	}
}
