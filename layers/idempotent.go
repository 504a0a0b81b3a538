package layers

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// RunStepChecked is RunStep with the idempotency check: the command runs a
// second time, in a sandbox of its own over the first run's changes, and
// the step fails, listing the paths, if that second run changed any file's
// type, content, mode or owner. Modification times are left out: layers
// clamp them anyway. The layer is the first run's.
func RunStepChecked(ctx context.Context, c *Cache, lowers []string, comp Compression, o RunOptions) (Descriptor, error) {
	scratch, upper, err := sandbox(ctx, c, lowers, o)
	defer os.RemoveAll(scratch)
	if err != nil {
		return Descriptor{}, err
	}
	if o.Out != nil {
		fmt.Fprintln(o.Out, "layerimg: checking idempotency: running the step a second time, on its own result")
	}
	stack := append(lowers[:len(lowers):len(lowers)], upper)
	scratch2, upper2, err := sandbox(ctx, c, stack, o)
	defer os.RemoveAll(scratch2)
	if err != nil {
		return Descriptor{}, fmt.Errorf("idempotency check (second run): %w", err)
	}
	diff, err := changedPaths(upper2, stack)
	if err != nil {
		return Descriptor{}, fmt.Errorf("idempotency check: %w", err)
	}
	if len(diff) > 0 {
		return Descriptor{}, &NotIdempotentError{Paths: diff}
	}
	return writeUpper(ctx, c, upper, comp, o)
}

// changedPaths lists the paths of an overlayfs upper dir that differ from
// what the stack of dirs below it (bottom first) shows at the same path.
// A directory copied up only because something below it was written is no
// change of its own.
func changedPaths(upper string, stack []string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(upper, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		below, belowPath := lookupBelow(stack, rel)
		if same, err := sameEntry(p, fi, belowPath, below); err != nil {
			return err
		} else if !same {
			out = append(out, "/"+filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// lookupBelow finds rel in the topmost dir of stack that has it; a
// whiteout (a 0/0 character device) there means it is absent.
func lookupBelow(stack []string, rel string) (fs.FileInfo, string) {
	for i := len(stack) - 1; i >= 0; i-- {
		p := filepath.Join(stack[i], rel)
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if isWhiteout(fi) {
			return nil, ""
		}
		return fi, p
	}
	return nil, ""
}

func isWhiteout(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0
}

// sameEntry compares an upper dir's entry with what was below it.
func sameEntry(p string, fi fs.FileInfo, belowPath string, below fs.FileInfo) (bool, error) {
	if below == nil {
		// A whiteout of something absent is no change.
		return isWhiteout(fi), nil
	}
	if isWhiteout(fi) || fi.Mode() != below.Mode() {
		return false, nil
	}
	a, aok := fi.Sys().(*syscall.Stat_t)
	b, bok := below.Sys().(*syscall.Stat_t)
	if aok && bok && (a.Uid != b.Uid || a.Gid != b.Gid || (fi.Mode()&fs.ModeDevice != 0 && a.Rdev != b.Rdev)) {
		return false, nil
	}
	switch {
	case fi.Mode().IsRegular():
		if fi.Size() != below.Size() {
			return false, nil
		}
		x, err := os.ReadFile(p)
		if err != nil {
			return false, err
		}
		y, err := os.ReadFile(belowPath)
		if err != nil {
			return false, err
		}
		return bytes.Equal(x, y), nil
	case fi.Mode()&fs.ModeSymlink != 0:
		x, err := os.Readlink(p)
		if err != nil {
			return false, err
		}
		y, err := os.Readlink(belowPath)
		return x == y, err
	}
	return true, nil
}
