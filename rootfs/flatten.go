package rootfs

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Flatten applies every layer of img, in order, onto dir.
func Flatten(ctx context.Context, img v1.Image, dir string) error {
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return fmt.Errorf("layer %s: %w", d, err)
		}
		err = Apply(ctx, dir, rc, ApplyOptions{Layer: d.String()})
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
