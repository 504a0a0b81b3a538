package layerimg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"

	"github.com/google/go-containerregistry/pkg/authn"
)

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func gunzip(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

type authConfig = authn.AuthConfig

func newTarReader(r io.Reader) *tar.Reader { return tar.NewReader(r) }
