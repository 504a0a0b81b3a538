package layers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is how layerimg talks to OCI registries: credentials from the
// Docker config and its helpers, TLS unless the host is listed insecure,
// and retries with backoff on 429, 5xx and dropped connections.
type Registry struct {
	Insecure []string
	Log      *slog.Logger
}

func (r Registry) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

// ParseRef parses an image reference; registries listed insecure may use
// plain HTTP, all others need HTTPS.
func (r Registry) ParseRef(ref string) (name.Reference, error) {
	p, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if isInsecure(p.Context().RegistryStr(), r.Insecure) {
		return name.ParseReference(ref, name.Insecure)
	}
	return p, nil
}

// Options are the ggcr options for every registry call.
func (r Registry) Options(ctx context.Context) []remote.Option {
	base := remote.DefaultTransport.(*http.Transport).Clone()
	var tr http.RoundTripper = &httpsOnly{next: base, insecure: r.Insecure, insecureTLS: insecureTLS(base)}
	tr = &failureLog{next: tr, log: r.log()}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithTransport(tr),
		remote.WithRetryBackoff(remote.Backoff{Duration: 300 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 6}),
		remote.WithRetryStatusCodes(http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout),
		remote.WithRetryPredicate(func(err error) bool {
			retry := isRetryable(err)
			if retry {
				r.log().Warn("registry connection failed; retrying", "err", err)
			}
			return retry
		}),
	}
}

func isRetryable(err error) bool {
	var te interface{ Temporary() bool }
	return (errors.As(err, &te) && te.Temporary()) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

func insecureTLS(t *http.Transport) *http.Transport {
	c := t.Clone()
	c.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for hosts the user listed
	return c
}

func isInsecure(host string, insecure []string) bool {
	for _, h := range insecure {
		if h == host {
			return true
		}
	}
	return false
}

// httpsOnly refuses plain HTTP to any registry not listed insecure, and
// skips certificate checks only for listed ones. ggcr falls back to HTTP for
// loopback and private addresses on its own; a builder of golden images
// must not.
type httpsOnly struct {
	next, insecureTLS http.RoundTripper
	insecure          []string
}

func (h *httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	listed := isInsecure(req.URL.Host, h.insecure)
	if req.URL.Scheme == "http" && !listed {
		return nil, fmt.Errorf("refusing plain HTTP to registry %s; pass --insecure-registry %s if you mean it", req.URL.Host, req.URL.Host)
	}
	if listed {
		return h.insecureTLS.RoundTrip(req)
	}
	return h.next.RoundTrip(req)
}

// failureLog logs every failed attempt below ggcr's retries, so retries
// show in the build log. URLs are logged without their query, which may
// carry tokens.
type failureLog struct {
	next http.RoundTripper
	log  *slog.Logger
}

func (f *failureLog) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := f.next.RoundTrip(req)
	where := req.Method + " " + req.URL.Host + req.URL.Path
	switch {
	case err != nil && req.URL.Path == "/v2/":
		// ggcr pings HTTPS, then HTTP for hosts listed insecure; it reports
		// the error itself when both fail.
	case err != nil:
		f.log.Warn("registry request failed", "request", where, "err", err)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		f.log.Warn("registry answered an error; retrying", "request", where, "status", resp.StatusCode)
	}
	return resp, err
}
