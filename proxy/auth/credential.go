package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/text/secure/precis"
)

// DefaultSCRAMIterations is PostgreSQL's default scram_iterations.
const DefaultSCRAMIterations = 4096

// Credential is what the proxy knows about a user's password. Exactly one
// field is set; ParseCredential fills it from config.User.Password.
type Credential struct {
	// Plain is the cleartext password. It works with every method.
	Plain string
	// MD5 is PostgreSQL's md5 hash: "md5" + hex(md5(password + user)).
	MD5 string
	// SCRAM is a stored SCRAM-SHA-256 verifier.
	SCRAM *SCRAMVerifier
}

// SCRAMVerifier is a stored SCRAM-SHA-256 secret as PostgreSQL keeps it in
// pg_authid.rolpassword. It is immutable once built and safe to share.
type SCRAMVerifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte // SHA-256(ClientKey)
	ServerKey  []byte // HMAC(SaltedPassword, "Server Key")
}

// ParseCredential interprets a configured password for user. It recognises
// PostgreSQL's stored formats:
//
//   - "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (base64
//     fields, as in pg_authid) → Credential.SCRAM; a value with that prefix
//     that does not parse is an error (a typo in a config file should not
//     silently become a plain password);
//   - "md5" followed by 32 lower-case hex digits → Credential.MD5 (PostgreSQL
//     accepts only lower case too);
//
// and treats anything else as a plain password. The md5 hash is salted with
// the user name, so it only matches the user it was made for.
func ParseCredential(user, password string) (Credential, error) {
	if strings.HasPrefix(password, "SCRAM-SHA-256$") {
		v, err := parseSCRAMVerifier(password)
		if err != nil {
			return Credential{}, fmt.Errorf("password of user %q: %w", user, err)
		}
		return Credential{SCRAM: v}, nil
	}
	if isMD5Hash(password) {
		return Credential{MD5: password}, nil
	}
	return Credential{Plain: password}, nil
}

func isMD5Hash(s string) bool {
	if len(s) != 35 || !strings.HasPrefix(s, "md5") {
		return false
	}
	for i := 3; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func parseSCRAMVerifier(s string) (*SCRAMVerifier, error) {
	bad := errors.New("malformed SCRAM-SHA-256 verifier (want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)")
	parts := strings.Split(s, "$")
	if len(parts) != 3 || parts[0] != "SCRAM-SHA-256" {
		return nil, bad
	}
	iterSalt := strings.SplitN(parts[1], ":", 2)
	keys := strings.SplitN(parts[2], ":", 2)
	if len(iterSalt) != 2 || len(keys) != 2 {
		return nil, bad
	}
	iter, err := strconv.Atoi(iterSalt[0])
	if err != nil || iter <= 0 {
		return nil, bad
	}
	salt, err1 := base64.StdEncoding.DecodeString(iterSalt[1])
	stored, err2 := base64.StdEncoding.DecodeString(keys[0])
	server, err3 := base64.StdEncoding.DecodeString(keys[1])
	if err1 != nil || err2 != nil || err3 != nil || len(salt) == 0 ||
		len(stored) != sha256.Size || len(server) != sha256.Size {
		return nil, bad
	}
	return &SCRAMVerifier{Iterations: iter, Salt: salt, StoredKey: stored, ServerKey: server}, nil
}

// NewSCRAMVerifier derives a verifier for password with a random 16-byte
// salt (PostgreSQL's length). iterations <= 0 means DefaultSCRAMIterations.
// The password is normalized as described at NormalizePassword.
func NewSCRAMVerifier(password string, iterations int) (*SCRAMVerifier, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return DeriveSCRAMVerifier(password, salt, iterations)
}

// DeriveSCRAMVerifier derives the verifier for password with a given salt
// (RFC 5802: SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, i)).
// iterations <= 0 means DefaultSCRAMIterations.
func DeriveSCRAMVerifier(password string, salt []byte, iterations int) (*SCRAMVerifier, error) {
	if iterations <= 0 {
		iterations = DefaultSCRAMIterations
	}
	salted, err := pbkdf2.Key(sha256.New, NormalizePassword(password), salt, iterations, sha256.Size)
	if err != nil {
		return nil, err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return &SCRAMVerifier{
		Iterations: iterations,
		Salt:       append([]byte(nil), salt...),
		StoredKey:  stored[:],
		ServerKey:  hmacSHA256(salted, "Server Key"),
	}, nil
}

// String returns the verifier in PostgreSQL's stored format, which
// ParseCredential (and CREATE ROLE ... PASSWORD) accept.
func (v *SCRAMVerifier) String() string {
	b64 := base64.StdEncoding.EncodeToString
	return "SCRAM-SHA-256$" + strconv.Itoa(v.Iterations) + ":" + b64(v.Salt) + "$" +
		b64(v.StoredKey) + ":" + b64(v.ServerKey)
}

// NormalizePassword prepares a password for SCRAM the way PostgreSQL and
// libpq/pgx do: SASLprep (here the PRECIS OpaqueString profile, RFC 8265,
// which is what pgx uses), falling back to the raw bytes when the password
// is not valid under it — PostgreSQL does the same fallback. ASCII passwords
// without control characters come out unchanged. For passwords with code
// points unassigned in Unicode 3.2 pgx also keeps the raw bytes while PRECIS
// (newer Unicode) may normalize; such passwords are not supported with SCRAM
// against a plain credential.
func NormalizePassword(password string) string {
	ascii := true
	for i := 0; i < len(password); i++ {
		if c := password[i]; c < 0x20 || c >= 0x7f {
			ascii = false
			break
		}
	}
	if ascii {
		return password
	}
	n, err := precis.OpaqueString.String(password)
	if err != nil {
		return password
	}
	return n
}

// MD5Hash returns PostgreSQL's stored md5 form of a password for user:
// "md5" + hex(md5(password + user)).
func MD5Hash(user, password string) string {
	sum := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// verifierCache keeps the verifiers derived for plain passwords, so SCRAM
// against a plain credential costs one PBKDF2 per distinct password, not
// one per connection. It is bounded: when full it is emptied (attempts with
// random passwords for unknown users must not grow it without limit).
var verifierCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*SCRAMVerifier
}

const verifierCacheMax = 1024

// plainVerifier returns a cached verifier for user's plain password. The
// key includes the user so two users with one password get different salts
// (a client must not be able to tell that they share it).
func plainVerifier(user, password string) (*SCRAMVerifier, error) {
	key := sha256.Sum256([]byte(user + "\x00" + password))
	verifierCache.mu.Lock()
	v := verifierCache.m[key]
	verifierCache.mu.Unlock()
	if v != nil {
		return v, nil
	}
	v, err := NewSCRAMVerifier(password, DefaultSCRAMIterations)
	if err != nil {
		return nil, err
	}
	verifierCache.mu.Lock()
	if verifierCache.m == nil || len(verifierCache.m) >= verifierCacheMax {
		verifierCache.m = make(map[[sha256.Size]byte]*SCRAMVerifier)
	}
	verifierCache.m[key] = v
	verifierCache.mu.Unlock()
	return v, nil
}

// mockSecret keys the salts of MockCredential; it lives as long as the
// process.
var mockSecret = func() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}()

// MockCredential returns a credential for a user that does not exist, to
// run an exchange that always fails (with 28P01) and looks like a real
// user's: under method md5 an md5 hash, otherwise a SCRAM verifier whose
// salt is derived from the user name and a per-process secret, so it stays
// the same across attempts as a real user's does (PostgreSQL's "mock"
// authentication does the same). It costs no PBKDF2.
func MockCredential(method, user string) Credential {
	m := hmac.New(sha256.New, mockSecret)
	m.Write([]byte(user))
	sum := m.Sum(nil)
	if method == MethodMD5 {
		return Credential{MD5: "md5" + hex.EncodeToString(sum[:16])}
	}
	keys := make([]byte, 2*sha256.Size)
	rand.Read(keys)
	return Credential{SCRAM: &SCRAMVerifier{
		Iterations: DefaultSCRAMIterations,
		Salt:       sum[:16],
		StoredKey:  keys[:sha256.Size],
		ServerKey:  keys[sha256.Size:],
	}}
}
