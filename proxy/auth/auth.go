package auth

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Methods accepted by Authenticate (config.Auth.Method).
const (
	MethodSCRAM = "scram-sha-256"
	MethodMD5   = "md5"
	MethodTrust = "trust"
)

// SQLSTATE codes an AuthError carries.
const (
	CodeInvalidPassword    = "28P01" // invalid_password
	CodeProtocolViolation  = "08P01" // protocol_violation
	CodeFeatureUnsupported = "0A000" // feature_not_supported
)

const scramMechanism = "SCRAM-SHA-256"

// AuthError is an authentication failure the client should see as an
// ErrorResponse (severity FATAL) with this SQLSTATE, message and detail.
type AuthError struct {
	Code    string
	Message string
	Detail  string
}

func (e *AuthError) Error() string {
	if e.Detail != "" {
		return e.Message + " (" + e.Detail + ")"
	}
	return e.Message
}

// PasswordFailed is the error PostgreSQL reports for a wrong password (and,
// to not reveal which users exist, for an unknown user).
func PasswordFailed(user string) *AuthError {
	return &AuthError{Code: CodeInvalidPassword, Message: fmt.Sprintf("password authentication failed for user %q", user)}
}

func protocolError(msg, detail string) *AuthError {
	return &AuthError{Code: CodeProtocolViolation, Message: msg, Detail: detail}
}

// Authenticate runs the password exchange of method on be, whose
// StartupMessage the caller has already read, for user with credential
// cred. It returns nil on success without sending AuthenticationOk (the
// caller sends it, with ParameterStatus and the rest).
//
// A wrong password returns *AuthError 28P01 `password authentication failed
// for user "NAME"`; a client that breaks the protocol (wrong message type,
// malformed SCRAM) gets *AuthError 08P01. The caller sends the
// ErrorResponse. Other errors are I/O errors on the connection.
//
// Method and credential are matched like PostgreSQL matches pg_hba and the
// stored password: "md5" with a SCRAM credential runs SCRAM; plain
// credentials work with both. Unlike PostgreSQL (which refuses), method
// "scram-sha-256" with an md5 credential falls back to md5, since the proxy
// cannot derive a SCRAM secret from an md5 hash. "trust" returns nil
// without a message.
//
// On return be's auth type is reset, so later 'p' messages decode as
// PasswordMessage again.
func Authenticate(be *pgproto3.Backend, method, user string, cred Credential) error {
	defer be.SetAuthType(pgproto3.AuthTypeOk)
	switch method {
	case MethodTrust:
		return nil
	case MethodSCRAM, MethodMD5:
	default:
		return fmt.Errorf("auth: unknown method %q", method)
	}
	switch {
	case cred.SCRAM != nil:
		return scramExchange(be, user, cred.SCRAM)
	case cred.MD5 != "":
		return md5Exchange(be, user, cred.MD5)
	case method == MethodMD5:
		return md5Exchange(be, user, MD5Hash(user, cred.Plain))
	default:
		v, err := plainVerifier(user, cred.Plain)
		if err != nil {
			return err
		}
		return scramExchange(be, user, v)
	}
}

// RequestCleartextPassword asks the client for its password in clear text
// (AuthenticationCleartextPassword) and returns what it sent, so the caller
// can check it elsewhere (passthrough authentication against a server). An
// empty password is returned as is; PostgreSQL treats it as a failure and
// so should the caller. Use it only over TLS or loopback.
func RequestCleartextPassword(be *pgproto3.Backend) (string, error) {
	defer be.SetAuthType(pgproto3.AuthTypeOk)
	be.Send(&pgproto3.AuthenticationCleartextPassword{})
	if err := be.Flush(); err != nil {
		return "", err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeCleartextPassword); err != nil {
		return "", err
	}
	msg, err := be.Receive()
	if err != nil {
		return "", err
	}
	pm, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return "", unexpected("password", msg)
	}
	return pm.Password, nil
}

func unexpected(want string, msg pgproto3.FrontendMessage) *AuthError {
	return protocolError(fmt.Sprintf("expected %s response, got %T message", want, msg), "")
}

// md5Exchange checks "md5" + hex(md5(hex(md5(password+user)) + salt)).
func md5Exchange(be *pgproto3.Backend, user, stored string) error {
	var salt [4]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return err
	}
	be.Send(&pgproto3.AuthenticationMD5Password{Salt: salt})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeMD5Password); err != nil {
		return err
	}
	msg, err := be.Receive()
	if err != nil {
		return err
	}
	pm, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return unexpected("password", msg)
	}
	sum := md5.Sum(append([]byte(stored[3:]), salt[:]...))
	want := "md5" + hex.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(pm.Password), []byte(want)) != 1 {
		return PasswordFailed(user)
	}
	return nil
}

// scramExchange runs SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel
// binding, as PostgreSQL does it: the user name in the client-first message
// is ignored (the startup user counts), gs2 headers "n,," and "y,," are
// accepted, "p=..." is refused since SCRAM-SHA-256-PLUS is not advertised.
func scramExchange(be *pgproto3.Backend, user string, v *SCRAMVerifier) error {
	be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{scramMechanism}})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return err
	}
	msg, err := be.Receive()
	if err != nil {
		return err
	}
	init, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		return unexpected("SASL", msg)
	}
	if init.AuthMechanism != scramMechanism {
		return protocolError("client selected an invalid SASL authentication mechanism", "")
	}
	// Data aliases be's read buffer: copy before the next Receive.
	clientFirst := string(init.Data)
	gs2, bare, err := parseClientFirst(clientFirst)
	if err != nil {
		return err
	}
	clientNonce, err := scramAttr(bare, 'r', 1)
	if err != nil {
		return err
	}

	var nonceBytes [18]byte
	if _, err := rand.Read(nonceBytes[:]); err != nil {
		return err
	}
	nonce := clientNonce + base64.StdEncoding.EncodeToString(nonceBytes[:])
	serverFirst := "r=" + nonce + ",s=" + base64.StdEncoding.EncodeToString(v.Salt) +
		",i=" + strconv.Itoa(v.Iterations)
	be.Send(&pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return err
	}
	msg, err = be.Receive()
	if err != nil {
		return err
	}
	resp, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return unexpected("SASL", msg)
	}
	clientFinal := string(resp.Data)

	// client-final-message = channel-binding "," nonce ["," extensions] "," proof
	cb, err := scramAttr(clientFinal, 'c', 0)
	if err != nil {
		return err
	}
	if cb != base64.StdEncoding.EncodeToString([]byte(gs2)) {
		return protocolError("SCRAM channel binding check failed", "")
	}
	gotNonce, err := scramAttr(clientFinal, 'r', 1)
	if err != nil {
		return err
	}
	if gotNonce != nonce {
		return protocolError("invalid SCRAM response", "Nonce does not match.")
	}
	pi := strings.LastIndex(clientFinal, ",p=")
	if pi < 0 {
		return malformed("Proof not found.")
	}
	proof, err := base64.StdEncoding.DecodeString(clientFinal[pi+3:])
	if err != nil || len(proof) != sha256.Size {
		return malformed("Malformed proof in client-final-message.")
	}
	authMessage := bare + "," + serverFirst + "," + clientFinal[:pi]

	clientSig := hmacSHA256(v.StoredKey, authMessage)
	clientKey := make([]byte, sha256.Size)
	for i := range clientKey {
		clientKey[i] = proof[i] ^ clientSig[i]
	}
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], v.StoredKey) != 1 {
		return PasswordFailed(user)
	}
	serverSig := hmacSHA256(v.ServerKey, authMessage)
	be.Send(&pgproto3.AuthenticationSASLFinal{Data: []byte("v=" + base64.StdEncoding.EncodeToString(serverSig))})
	return be.Flush()
}

func malformed(detail string) *AuthError {
	return protocolError("malformed SCRAM message", detail)
}

// parseClientFirst splits client-first-message into its gs2 header
// (including the trailing ',') and the bare part.
func parseClientFirst(s string) (gs2, bare string, err error) {
	if s == "" {
		return "", "", malformed("The message is empty.")
	}
	switch s[0] {
	case 'n', 'y':
		if len(s) < 2 || s[1] != ',' {
			return "", "", malformed("Comma expected after the channel binding flag.")
		}
	case 'p':
		return "", "", malformed("The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.")
	default:
		return "", "", malformed("Unexpected channel-binding flag.")
	}
	rest := s[2:]
	if strings.HasPrefix(rest, "a=") {
		return "", "", &AuthError{Code: CodeFeatureUnsupported, Message: "client uses authorization identity, but it is not supported"}
	}
	if !strings.HasPrefix(rest, ",") {
		return "", "", malformed("Unexpected attribute in client-first-message.")
	}
	gs2 = s[:3]
	bare = s[3:]
	if strings.HasPrefix(bare, "m=") {
		return "", "", &AuthError{Code: CodeFeatureUnsupported, Message: "client requires an unsupported SCRAM extension"}
	}
	if !strings.HasPrefix(bare, "n=") {
		return "", "", malformed("Expected attribute \"n\".")
	}
	return gs2, bare, nil
}

// scramAttr returns the value of attribute name, which must be the index-th
// comma-separated field of msg.
func scramAttr(msg string, name byte, index int) (string, error) {
	fields := strings.Split(msg, ",")
	if index >= len(fields) {
		return "", malformed(fmt.Sprintf("Expected attribute %q.", name))
	}
	f := fields[index]
	if len(f) < 2 || f[0] != name || f[1] != '=' {
		return "", malformed(fmt.Sprintf("Expected attribute %q.", name))
	}
	val := f[2:]
	if name == 'r' {
		if val == "" {
			return "", malformed("Empty nonce.")
		}
		for i := 0; i < len(val); i++ {
			if val[i] < 0x21 || val[i] > 0x7e {
				return "", malformed("Non-printable character in nonce.")
			}
		}
	}
	return val, nil
}
