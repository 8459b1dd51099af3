package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls the admin API of one proxy. shardctl and the tests use it.
type Client struct {
	// BaseURL is the proxy's admin address, e.g. "http://127.0.0.1:9930".
	BaseURL string
	// Token is sent as a bearer token when set.
	Token string
	// HTTP is the client to use (default: 30s timeout).
	HTTP *http.Client
	// RetryFor keeps retrying answers marked retryable (leadership moving)
	// for this long; 0 = no retries.
	RetryFor time.Duration
}

// ErrUnreachable wraps transport errors: the proxy did not answer.
var ErrUnreachable = errors.New("admin API unreachable")

// Get calls GET path (with query) and decodes the answer into out.
func (c *Client) Get(ctx context.Context, path string, query url.Values, out any) error {
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	return c.Do(ctx, http.MethodGet, path, nil, out)
}

// Do calls method path with in as JSON body (nil: none) and decodes the
// answer into out (nil: discard). Non-2xx answers return *APIError.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	deadline := time.Now().Add(c.RetryFor)
	for {
		err := c.do(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, in, out)
		var ae *APIError
		if err == nil || !errors.As(err, &ae) || !ae.Retryable || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Client) do(ctx context.Context, method, fullURL string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, fullURL, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrUnreachable, method, fullURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%w: reading the answer to %s %s: %v", ErrUnreachable, method, fullURL, err)
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{}
		if json.Unmarshal(b, ae) != nil || ae.Msg == "" {
			ae = &APIError{Code: CodeInternal, Msg: fmt.Sprintf("%s %s: HTTP %d: %.300s", method, fullURL, resp.StatusCode, b)}
			if resp.StatusCode == http.StatusNotFound {
				ae.Hint = "is this a shardproxy admin address (admin_listen)?"
			}
		}
		ae.Status = resp.StatusCode
		return ae
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], b...)
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding the answer to %s %s: %v", method, fullURL, err)
	}
	return nil
}
