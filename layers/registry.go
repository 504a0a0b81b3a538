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
	"net/http/httptrace"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/layerimg/layerimg/internal/progress"
)

// Registry is how layerimg talks to OCI registries: credentials from the
// Docker config and its helpers, TLS unless the host is listed insecure,
// and retries with backoff on 429, 5xx and dropped connections.
//
// Every network call is bounded, so a registry that stops answering fails
// the build, naming its address, instead of hanging it. The zero value of
// each figure below means its default; tests shorten them.
type Registry struct {
	Insecure []string
	Log      *slog.Logger

	// DialTimeout bounds the TCP connect (default 10s). A registry answers a
	// SYN in milliseconds; 10s leaves room for two SYN retransmissions.
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds the TLS handshake (default 10s, Go's own
	// default): a few round trips, slow only when the peer is not answering.
	TLSHandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers once the
	// request is sent (default 30s). Registries answer pings, manifests and
	// blob redirects in well under a second; 30s allows for a loaded one.
	ResponseHeaderTimeout time.Duration
	// CommitTimeout replaces ResponseHeaderTimeout for PUT and PATCH
	// (default 5m): a registry may copy or hash a multi-gigabyte blob in its
	// storage before it answers the request that completes an upload.
	CommitTimeout time.Duration
	// StallTimeout fails a body that moves no bytes for this long, in either
	// direction (default 30s). It is a stall guard, not a deadline: a large
	// blob that keeps moving is never cut off, however long it takes.
	StallTimeout time.Duration
	// RetryBudget stops retrying a request that has been failing for this
	// long (default 60s). Only fast failures are retried (refused or reset
	// connections, 429, 5xx); a timeout above means the registry is not
	// answering, and repeating the wait would only multiply it.
	RetryBudget time.Duration
	// RetryBackoff spaces the retries (default 300ms doubling, 6 attempts:
	// at most about 11s of sleeping, enough to ride out a restart or a
	// rate limit's window).
	RetryBackoff remote.Backoff
}

// Connection pool settings; not per registry, so constants.
const (
	// tcpKeepAlive probes idle connections so a peer that vanished is noticed.
	tcpKeepAlive = 30 * time.Second
	// idleConnTimeout drops pooled connections before load balancers (AWS
	// ALB: 60s) and NATs drop them silently, which would leave the next
	// request waiting for headers on a dead connection.
	idleConnTimeout = 45 * time.Second
)

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (r Registry) dialTimeout() time.Duration { return orDefault(r.DialTimeout, 10*time.Second) }
func (r Registry) tlsTimeout() time.Duration  { return orDefault(r.TLSHandshakeTimeout, 10*time.Second) }
func (r Registry) headerTimeout() time.Duration {
	return orDefault(r.ResponseHeaderTimeout, 30*time.Second)
}
func (r Registry) commitTimeout() time.Duration { return orDefault(r.CommitTimeout, 5*time.Minute) }
func (r Registry) stallTimeout() time.Duration  { return orDefault(r.StallTimeout, 30*time.Second) }
func (r Registry) retryBudget() time.Duration   { return orDefault(r.RetryBudget, time.Minute) }

func (r Registry) backoff() remote.Backoff {
	if r.RetryBackoff.Steps > 0 {
		return r.RetryBackoff
	}
	return remote.Backoff{Duration: 300 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 6}
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

// retryCodes are the statuses worth another attempt.
var retryCodes = []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
	http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// Options are the ggcr options for every registry call.
func (r Registry) Options(ctx context.Context) []remote.Option {
	base := remote.DefaultTransport.(*http.Transport).Clone()
	base.DialContext = (&net.Dialer{Timeout: r.dialTimeout(), KeepAlive: tcpKeepAlive}).DialContext
	base.TLSHandshakeTimeout = r.tlsTimeout()
	base.IdleConnTimeout = idleConnTimeout
	base.ExpectContinueTimeout = time.Second
	// Response headers and bodies are bounded by guard, which can tell an
	// upload's commit from a metadata request.
	base.ResponseHeaderTimeout = 0
	var tr http.RoundTripper = &httpsOnly{next: base, insecure: r.Insecure, insecureTLS: insecureTLS(base)}
	tr = &guard{next: tr, r: r, ops: map[*http.Request]*opState{}}
	tr = &failureLog{next: tr, log: r.log()}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithTransport(tr),
		remote.WithRetryBackoff(r.backoff()),
		remote.WithRetryStatusCodes(retryCodes...),
		remote.WithRetryPredicate(func(err error) bool {
			retry := isRetryable(err)
			if retry {
				r.log().Warn("registry connection failed; retrying", "err", err)
			}
			return retry
		}),
	}
}

// isRetryable says whether a failed attempt is worth repeating: a dropped
// connection is, a timeout is not (see Registry.RetryBudget).
func isRetryable(err error) bool {
	if isTimeout(err) {
		return false
	}
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

// timeoutError is a registry that stopped answering. It names the address,
// which is what a user needs to find the culprit.
type timeoutError struct {
	msg string
	err error // what net/http reported, if anything
}

func (e *timeoutError) Error() string { return e.msg }
func (e *timeoutError) Unwrap() error { return e.err }
func (e *timeoutError) Timeout() bool { return true }

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// opState is one request's history across ggcr's retries.
type opState struct {
	start    time.Time
	attempts int
	last     error
}

// guard bounds each attempt below ggcr's retries: the wait for response
// headers, bodies that stop moving (a watchdog that runs only while a read
// or write is waiting on the network, so a slow consumer is not blamed),
// and the time spent retrying one request. It rewords timeouts to name the
// registry.
type guard struct {
	next http.RoundTripper
	r    Registry

	mu  sync.Mutex
	ops map[*http.Request]*opState // keyed by ggcr's request, which its retries reuse
}

// phase is how far an attempt got, for the error message.
type phase int32

const (
	phaseConnect phase = iota + 1
	phaseTLS
	phaseSent
)

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	op, err := g.begin(req, host)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{cancel: cancel}
	var at atomic.Int32
	headerWait, headerErr := g.r.headerTimeout(), "sent no response headers within"
	if req.Method == http.MethodPut || req.Method == http.MethodPatch {
		headerWait, headerErr = g.r.commitTimeout(), "did not answer an upload within"
	}
	trace := &httptrace.ClientTrace{
		ConnectStart:      func(string, string) { at.Store(int32(phaseConnect)) },
		TLSHandshakeStart: func() { at.Store(int32(phaseTLS)) },
		WroteRequest: func(httptrace.WroteRequestInfo) {
			at.Store(int32(phaseSent))
			// armUpload: a registry may answer before the upload is
			// written (a 401 or 413 mid-body); the wait is over then.
			w.armUpload(headerWait, &timeoutError{msg: fmt.Sprintf("registry %s %s %s", host, headerErr, headerWait)})
		},
	}
	out := req.WithContext(httptrace.WithClientTrace(ctx, trace))
	stall := g.r.stallTimeout()
	if req.Body != nil && req.Body != http.NoBody {
		out.Body = &sendBody{ReadCloser: req.Body, w: w, d: stall, host: host}
		if req.GetBody != nil {
			out.GetBody = func() (io.ReadCloser, error) {
				b, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				return &sendBody{ReadCloser: b, w: w, d: stall, host: host}, nil
			}
		}
	}
	resp, err := g.next.RoundTrip(out)
	w.endUpload()
	if err != nil {
		err = g.explain(ctx, err, phase(at.Load()), host)
		cancel(nil)
		g.end(req, op, err, 0)
		return nil, err
	}
	g.end(req, op, nil, resp.StatusCode)
	resp.Body = &recvBody{ReadCloser: resp.Body, ctx: ctx, w: w, d: stall, host: host}
	return resp, nil
}

// explain turns what net/http reports into what the user needs to know.
func (g *guard) explain(ctx context.Context, err error, at phase, host string) error {
	var te *timeoutError
	if errors.As(context.Cause(ctx), &te) {
		return te
	}
	if ctx.Err() != nil || !isTimeout(err) {
		return err // cancelled by the caller, or not a timeout
	}
	switch at {
	case phaseConnect:
		return &timeoutError{msg: fmt.Sprintf("registry %s accepted no connection within %s", host, g.r.dialTimeout()), err: err}
	case phaseTLS:
		return &timeoutError{msg: fmt.Sprintf("registry %s did not complete the TLS handshake within %s", host, g.r.tlsTimeout()), err: err}
	}
	return err
}

// begin records an attempt and refuses one once the request has been
// failing for longer than the retry budget.
func (g *guard) begin(req *http.Request, host string) (*opState, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	op := g.ops[req]
	if op == nil {
		// Forget requests whose last attempt failed and that ggcr gave up on.
		for k, o := range g.ops {
			if now.Sub(o.start) > 4*g.r.retryBudget() {
				delete(g.ops, k)
			}
		}
		op = &opState{start: now}
		g.ops[req] = op
	}
	if op.attempts > 0 && now.Sub(op.start) > g.r.retryBudget() {
		delete(g.ops, req)
		// %v, not %w: the last error may look retryable, and this must end
		// ggcr's retries.
		return nil, fmt.Errorf("registry %s: giving up after %d attempts in %s: %v",
			host, op.attempts, now.Sub(op.start).Round(time.Second), op.last)
	}
	op.attempts++
	return op, nil
}

// end forgets a request unless ggcr will retry it.
func (g *guard) end(req *http.Request, op *opState, err error, status int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case err != nil && isRetryable(err):
		op.last = err
	case err == nil && slices.Contains(retryCodes, status):
		op.last = fmt.Errorf("registry %s answered %d %s", req.URL.Host, status, http.StatusText(status))
	default:
		delete(g.ops, req)
	}
}

// watchdog cancels an attempt when armed for longer than its duration.
type watchdog struct {
	mu     sync.Mutex
	gen    int
	t      *time.Timer
	cancel context.CancelCauseFunc
	// sent is set once the response is in: a registry may answer before
	// reading the whole upload, and the rest of it is no longer watched.
	sent bool
}

func (w *watchdog) arm(d time.Duration, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armLocked(d, err)
}

func (w *watchdog) armUpload(d time.Duration, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.sent {
		w.armLocked(d, err)
	}
}

func (w *watchdog) armLocked(d time.Duration, err error) {
	w.gen++
	gen := w.gen
	if w.t != nil {
		w.t.Stop()
	}
	w.t = time.AfterFunc(d, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.gen == gen {
			w.cancel(err)
		}
	})
}

func (w *watchdog) endUpload() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sent = true
	w.disarmLocked()
}

func (w *watchdog) disarm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.disarmLocked()
}

func (w *watchdog) disarmLocked() {
	w.gen++
	if w.t != nil {
		w.t.Stop()
	}
}

// recvBody fails a response body that sends nothing for d while being read.
type recvBody struct {
	io.ReadCloser
	ctx  context.Context
	w    *watchdog
	d    time.Duration
	host string
	n    int64
}

func (b *recvBody) Read(p []byte) (int, error) {
	b.w.arm(b.d, &timeoutError{msg: fmt.Sprintf("registry %s sent no data for %s, %d bytes into a response", b.host, b.d, b.n)})
	n, err := b.ReadCloser.Read(p)
	b.w.disarm()
	b.n += int64(n)
	if err != nil && err != io.EOF {
		var te *timeoutError
		if errors.As(context.Cause(b.ctx), &te) {
			err = te
		}
	}
	return n, err
}

func (b *recvBody) Close() error {
	b.w.disarm()
	err := b.ReadCloser.Close()
	b.w.cancel(nil)
	return err
}

// sendBody fails an upload the registry stops accepting: the watchdog runs
// while net/http writes what the last Read returned.
type sendBody struct {
	io.ReadCloser
	w    *watchdog
	d    time.Duration
	host string
	n    int64
}

func (b *sendBody) Read(p []byte) (int, error) {
	b.w.disarm()
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	b.w.armUpload(b.d, &timeoutError{msg: fmt.Sprintf("registry %s accepted no data for %s, %d bytes into an upload", b.host, b.d, b.n)})
	return n, err
}

// PushProgress reports the bytes of one registry write to ctx's progress
// sink as the transfer name. Add the options it returns to the write, and
// call wait once the write has returned. Without a sink it adds nothing.
func PushProgress(ctx context.Context, name string) (opts []remote.Option, wait func()) {
	if progress.FromContext(ctx) == nil {
		return nil, func() {}
	}
	updates := make(chan v1.Update, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m *progress.Meter
		var last int64
		for u := range updates {
			if m == nil {
				m = progress.Start(ctx, name, u.Total)
			}
			m.SetTotal(u.Total)
			m.Add(u.Complete - last)
			last = u.Complete
		}
		m.Finish()
	}()
	// ggcr closes updates when the write returns, whatever its outcome.
	return []remote.Option{remote.WithProgress(updates)}, func() {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
}
