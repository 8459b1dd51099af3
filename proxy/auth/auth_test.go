package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// fakeServer accepts connections and authenticates each with run, then
// finishes the startup (AuthenticationOk, ReadyForQuery) or sends the
// error like the proxy does.
type fakeServer struct {
	ln      net.Listener
	results chan error
}

func startServer(t *testing.T, run func(be *pgproto3.Backend, user string) error) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln, results: make(chan error, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c, run)
		}
	}()
	return s
}

func (s *fakeServer) serve(c net.Conn, run func(be *pgproto3.Backend, user string) error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	be := pgproto3.NewBackend(c, c)
	msg, err := be.ReceiveStartupMessage()
	if err != nil {
		s.results <- err
		return
	}
	sm, ok := msg.(*pgproto3.StartupMessage)
	if !ok {
		s.results <- fmt.Errorf("unexpected startup message %T", msg)
		return
	}
	err = run(be, sm.Parameters["user"])
	var ae *AuthError
	switch {
	case err == nil:
		be.Send(&pgproto3.AuthenticationOk{})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		be.Flush()
		// Wait for Terminate (or EOF) so the client sees a clean close.
		be.Receive()
	case errors.As(err, &ae):
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: ae.Code, Message: ae.Message, Detail: ae.Detail})
		be.Flush()
	}
	s.results <- err
}

func (s *fakeServer) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.results:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("server did not finish authentication")
		return nil
	}
}

func (s *fakeServer) connect(t *testing.T, user, password string) error {
	t.Helper()
	addr := s.ln.Addr().(*net.TCPAddr)
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=db sslmode=disable connect_timeout=20", addr.Port, user)
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = password
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

func mustCred(t *testing.T, user, password string) Credential {
	t.Helper()
	c, err := ParseCredential(user, password)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAuthenticateRealClient(t *testing.T) {
	verifier, err := NewSCRAMVerifier("s3cret", 0)
	if err != nil {
		t.Fatal(err)
	}
	lowIter, err := NewSCRAMVerifier("s3cret", 1000)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		method   string
		stored   string // configured password
		password string // what the client sends
		ok       bool
	}{
		{"scram plain ok", MethodSCRAM, "s3cret", "s3cret", true},
		{"scram plain wrong", MethodSCRAM, "s3cret", "nope", false},
		{"scram plain empty client password", MethodSCRAM, "s3cret", "", false},
		{"scram verifier ok", MethodSCRAM, verifier.String(), "s3cret", true},
		{"scram verifier wrong", MethodSCRAM, verifier.String(), "S3cret", false},
		{"scram verifier 1000 iterations", MethodSCRAM, lowIter.String(), "s3cret", true},
		{"scram non-ascii password", MethodSCRAM, "pässwörd ünïcode", "pässwörd ünïcode", true},
		{"scram non-ascii wrong", MethodSCRAM, "pässwörd", "passwörd", false},
		{"md5 plain ok", MethodMD5, "s3cret", "s3cret", true},
		{"md5 plain wrong", MethodMD5, "s3cret", "s3cre", false},
		{"md5 hash ok", MethodMD5, MD5Hash("alice", "s3cret"), "s3cret", true},
		{"md5 hash wrong", MethodMD5, MD5Hash("alice", "s3cret"), "x", false},
		{"md5 hash of another user", MethodMD5, MD5Hash("bob", "s3cret"), "s3cret", false},
		{"md5 method with scram verifier uses scram", MethodMD5, verifier.String(), "s3cret", true},
		{"md5 method with scram verifier wrong", MethodMD5, verifier.String(), "x", false},
		{"scram method with md5 hash falls back", MethodSCRAM, MD5Hash("alice", "s3cret"), "s3cret", true},
		{"scram method with md5 hash wrong", MethodSCRAM, MD5Hash("alice", "s3cret"), "bad", false},
		{"trust", MethodTrust, "s3cret", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cred := mustCred(t, "alice", tc.stored)
			srv := startServer(t, func(be *pgproto3.Backend, user string) error {
				return Authenticate(be, tc.method, user, cred)
			})
			cerr := srv.connect(t, "alice", tc.password)
			serr := srv.result(t)
			if tc.ok {
				if cerr != nil || serr != nil {
					t.Fatalf("want success, client: %v, server: %v", cerr, serr)
				}
				return
			}
			var pe *pgconn.PgError
			if !errors.As(cerr, &pe) {
				t.Fatalf("client error = %v, want a PgError", cerr)
			}
			if pe.Code != "28P01" || pe.Message != `password authentication failed for user "alice"` {
				t.Fatalf("client got %s %q", pe.Code, pe.Message)
			}
			var ae *AuthError
			if !errors.As(serr, &ae) || ae.Code != CodeInvalidPassword {
				t.Fatalf("server error = %v", serr)
			}
		})
	}
}

func TestRequestCleartextPassword(t *testing.T) {
	got := make(chan string, 1)
	srv := startServer(t, func(be *pgproto3.Backend, user string) error {
		pw, err := RequestCleartextPassword(be)
		got <- pw
		if err != nil {
			return err
		}
		if pw != "hunter2" {
			return PasswordFailed(user)
		}
		return nil
	})
	if err := srv.connect(t, "bob", "hunter2"); err != nil {
		t.Fatal(err)
	}
	if err := srv.result(t); err != nil {
		t.Fatal(err)
	}
	if pw := <-got; pw != "hunter2" {
		t.Fatalf("password = %q", pw)
	}
	err := srv.connect(t, "bob", "wrong")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("wrong password: %v", err)
	}
	srv.result(t)
	if pw := <-got; pw != "wrong" {
		t.Fatalf("password = %q", pw)
	}
}

// rawExchange connects with a bare pgproto3.Frontend so tests can send what
// a well-behaved client never would.
func rawExchange(t *testing.T, method string, cred Credential, script func(fe *pgproto3.Frontend) error) error {
	t.Helper()
	srv := startServer(t, func(be *pgproto3.Backend, user string) error {
		return Authenticate(be, method, user, cred)
	})
	c, err := net.Dial("tcp", srv.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "carol", "database": "db"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := script(fe); err != nil {
		t.Fatal(err)
	}
	// The server's answer to the bad message: an ErrorResponse.
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("client receive: %v", err)
		}
		if er, ok := msg.(*pgproto3.ErrorResponse); ok {
			srvErr := srv.result(t)
			var ae *AuthError
			if !errors.As(srvErr, &ae) || ae.Code != er.Code {
				t.Fatalf("server returned %v, client saw %s", srvErr, er.Code)
			}
			return srvErr
		}
	}
}

func expectSASL(fe *pgproto3.Frontend) error {
	msg, err := fe.Receive()
	if err != nil {
		return err
	}
	if _, ok := msg.(*pgproto3.AuthenticationSASL); !ok {
		return fmt.Errorf("got %T, want AuthenticationSASL", msg)
	}
	return nil
}

func TestProtocolViolations(t *testing.T) {
	cred := Credential{Plain: "pw"}
	code := func(err error) string {
		var ae *AuthError
		if errors.As(err, &ae) {
			return ae.Code
		}
		return ""
	}
	t.Run("query instead of SASL initial response", func(t *testing.T) {
		err := rawExchange(t, MethodSCRAM, cred, func(fe *pgproto3.Frontend) error {
			if err := expectSASL(fe); err != nil {
				return err
			}
			fe.Send(&pgproto3.Query{String: "SELECT 1"})
			return fe.Flush()
		})
		if code(err) != "08P01" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("channel binding requested", func(t *testing.T) {
		err := rawExchange(t, MethodSCRAM, cred, func(fe *pgproto3.Frontend) error {
			if err := expectSASL(fe); err != nil {
				return err
			}
			fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256",
				Data: []byte("p=tls-server-end-point,,n=,r=abcdef")})
			return fe.Flush()
		})
		if code(err) != "08P01" || !strings.Contains(err.Error(), "channel binding") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown mechanism", func(t *testing.T) {
		err := rawExchange(t, MethodSCRAM, cred, func(fe *pgproto3.Frontend) error {
			if err := expectSASL(fe); err != nil {
				return err
			}
			fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256-PLUS", Data: []byte("n,,n=,r=abc")})
			return fe.Flush()
		})
		if code(err) != "08P01" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("nonce mismatch", func(t *testing.T) {
		err := rawExchange(t, MethodSCRAM, cred, func(fe *pgproto3.Frontend) error {
			if err := expectSASL(fe); err != nil {
				return err
			}
			fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("y,,n=,r=clientnonce")})
			if err := fe.Flush(); err != nil {
				return err
			}
			msg, err := fe.Receive()
			if err != nil {
				return err
			}
			sc, ok := msg.(*pgproto3.AuthenticationSASLContinue)
			if !ok || !strings.HasPrefix(string(sc.Data), "r=clientnonce") {
				return fmt.Errorf("server-first = %#v", msg)
			}
			fe.Send(&pgproto3.SASLResponse{Data: []byte("c=eSws,r=clientnonceXXXX,p=" + strings.Repeat("A", 43) + "=")})
			return fe.Flush()
		})
		if code(err) != "08P01" || !strings.Contains(err.Error(), "Nonce") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("query instead of md5 password", func(t *testing.T) {
		err := rawExchange(t, MethodMD5, cred, func(fe *pgproto3.Frontend) error {
			msg, err := fe.Receive()
			if err != nil {
				return err
			}
			if _, ok := msg.(*pgproto3.AuthenticationMD5Password); !ok {
				return fmt.Errorf("got %T", msg)
			}
			fe.Send(&pgproto3.Query{String: "SELECT 1"})
			return fe.Flush()
		})
		if code(err) != "08P01" {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestParseCredential(t *testing.T) {
	v, err := DeriveSCRAMVerifier("pw", []byte("0123456789abcdef"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		in      string
		kind    string // plain, md5, scram, error
		comment string
	}{
		{"secret", "plain", ""},
		{"", "plain", "empty"},
		{"md5" + strings.Repeat("a", 32), "md5", ""},
		{"md5" + strings.Repeat("A", 32), "plain", "upper-case hex is not an md5 hash for PostgreSQL"},
		{"md5" + strings.Repeat("a", 31), "plain", "too short"},
		{v.String(), "scram", ""},
		{"SCRAM-SHA-256$4096:c2FsdA==$bad", "error", "malformed verifier"},
		{"SCRAM-SHA-256$x:c2FsdA==$" + strings.Repeat("A", 43) + "=:" + strings.Repeat("A", 43) + "=", "error", "bad iterations"},
		{"SCRAM-SHA-256$4096:c2FsdA==$QUJD:" + strings.Repeat("A", 43) + "=", "error", "short StoredKey"},
	}
	for _, tc := range cases {
		c, err := ParseCredential("u", tc.in)
		got := "error"
		switch {
		case err != nil:
		case c.SCRAM != nil:
			got = "scram"
		case c.MD5 != "":
			got = "md5"
		default:
			got = "plain"
			if c.Plain != tc.in {
				t.Errorf("%q: Plain = %q", tc.in, c.Plain)
			}
		}
		if got != tc.kind {
			t.Errorf("%q (%s): got %s (%v), want %s", tc.in, tc.comment, got, err, tc.kind)
		}
	}
	c, _ := ParseCredential("u", v.String())
	if c.SCRAM.String() != v.String() || c.SCRAM.Iterations != 4096 || string(c.SCRAM.Salt) != "0123456789abcdef" {
		t.Fatalf("round trip: %s vs %s", c.SCRAM, v)
	}
}

// TestRFC7677Vector checks the key derivation against the SCRAM-SHA-256
// example of RFC 7677 section 3 (user "user", password "pencil").
func TestRFC7677Vector(t *testing.T) {
	salt := []byte{0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81}
	v, err := DeriveSCRAMVerifier("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	authMessage := "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," +
		"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	// proof = ClientKey XOR HMAC(StoredKey, AuthMessage); the RFC gives
	// p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ= and
	// v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=.
	sig := hmacSHA256(v.ServerKey, authMessage)
	if got := b64(sig); got != "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=" {
		t.Fatalf("server signature %s", got)
	}
	clientSig := hmacSHA256(v.StoredKey, authMessage)
	proof := mustB64(t, "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
	for i := range proof {
		proof[i] ^= clientSig[i]
	}
	if got := sha256Sum(proof); b64(got) != b64(v.StoredKey) {
		t.Fatal("client proof does not verify")
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func TestMockCredential(t *testing.T) {
	for _, method := range []string{MethodSCRAM, MethodMD5} {
		a, b := MockCredential(method, "ghost"), MockCredential(method, "ghost")
		if method == MethodSCRAM && (a.SCRAM == nil || string(a.SCRAM.Salt) != string(b.SCRAM.Salt)) {
			t.Fatalf("mock salt not stable: %+v %+v", a.SCRAM, b.SCRAM)
		}
		if method == MethodSCRAM && string(MockCredential(method, "other").SCRAM.Salt) == string(a.SCRAM.Salt) {
			t.Fatal("mock salt does not depend on the user")
		}
		if method == MethodMD5 && !isMD5Hash(a.MD5) {
			t.Fatalf("mock md5 %q", a.MD5)
		}
		srv := startServer(t, func(be *pgproto3.Backend, user string) error {
			return Authenticate(be, method, user, a)
		})
		err := srv.connect(t, "ghost", "anything")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "28P01" || pe.Message != `password authentication failed for user "ghost"` {
			t.Fatalf("%s: %v", method, err)
		}
		srv.result(t)
	}
}
