package armfake

import (
	"context"
	"testing"

	"github.com/layerimg/layerimg/internal/azurite"
)

// WithAzurite starts Azurite in a temporary dir and an ARM fake whose disks
// live in it, both stopped when tb ends: what an end-to-end Azure test needs.
func WithAzurite(tb testing.TB, subscription string) *Server {
	tb.Helper()
	st, err := azurite.Start(context.Background(), tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Stop)
	s := New(subscription, st.URL, azurite.Account, azurite.Key)
	tb.Cleanup(s.Close)
	return s
}
