package rootfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// inRootTree makes an image tree whose links point at a host directory
// (outside the tree) that holds a secret, with a decoy at the same path
// inside the image. It returns the tree and the host directory.
func inRootTree(t *testing.T) (root, host string) {
	t.Helper()
	host = t.TempDir()
	root = t.TempDir()
	write := func(p, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(host, "secret"), "HOST SECRET")
	write(filepath.Join(root, "etc/real"), "image")
	write(filepath.Join(root, host, "secret"), "decoy") // host's path, inside the image
	link("etc/real", "rel")
	link("/etc/real", "abs")
	link(filepath.Join(host, "secret"), "abshost")
	link(strings.Repeat("../", 20)+strings.TrimPrefix(host, "/")+"/secret", "climb")
	link(host, "dirlink")
	link("../..", "etc/up")
	if err := unix.Mkfifo(filepath.Join(root, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	return root, host
}

func TestInRootFollowsLinksInsideTheImage(t *testing.T) {
	root, host := inRootTree(t)
	read := func(rel string) (string, error) {
		f, err := OpenInRoot(root, rel)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		return string(b), err
	}
	for rel, want := range map[string]string{
		"etc/real":        "image",
		"/rel":            "image",
		"abs":             "image",
		"abshost":         "decoy", // the host's path, taken inside the image
		"dirlink/secret":  "decoy",
		"etc/../etc/real": "image",
		"/etc/./real/":    "image",
	} {
		if got, err := read(rel); err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", rel, got, err, want)
		}
	}
	for _, rel := range []string{"etc/up/etc/real", "../x", "etc/../../x"} {
		got, err := read(rel)
		var esc *ErrEscape
		if !errors.As(err, &esc) || !strings.Contains(err.Error(), "/"+rel) {
			t.Errorf("%s: got %q, %v; want an escape error naming it", rel, got, err)
		}
	}

	_, err := read("climb")
	var esc *ErrEscape
	if !errors.As(err, &esc) || !strings.Contains(err.Error(), "/climb") || !strings.Contains(err.Error(), "outside the root") {
		t.Errorf("climb: %v; want an escape error naming /climb", err)
	}
	if _, err := StatInRoot(root, "climb"); !errors.As(err, &esc) {
		t.Errorf("stat climb: %v", err)
	}
	// Lstat of the link itself is fine: it is in the image.
	if fi, err := LstatInRoot(root, "climb"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("lstat climb: %v, %v", fi, err)
	}
	if fi, err := StatInRoot(root, "rel"); err != nil || !fi.Mode().IsRegular() || fi.Size() != 5 {
		t.Errorf("stat rel: %v, %v", fi, err)
	}
	if _, err := StatInRoot(root, "missing/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat missing: %v", err)
	}

	for rel, want := range map[string]string{"abs": "etc/real", "/dirlink/secret": strings.TrimPrefix(host, "/") + "/secret", "": "", "etc/nope": "etc/nope"} {
		if got, err := ResolveInRoot(root, rel); err != nil || got != want {
			t.Errorf("resolve %q: %q, %v; want %q", rel, got, err, want)
		}
	}

	ents, err := ReadDirInRoot(root, "dirlink")
	if err != nil || len(ents) != 1 || ents[0].Name() != "secret" {
		t.Fatalf("readdir dirlink: %v, %v", ents, err)
	}
	if fi, err := ents[0].Info(); err != nil || fi.Size() != int64(len("decoy")) {
		t.Errorf("readdir dirlink info: %v, %v", fi, err)
	}
	ents, err = ReadDirInRoot(root, "/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		if e.Name() == "abshost" && e.Type() != fs.ModeSymlink {
			t.Errorf("abshost listed as %v", e.Type())
		}
	}
	if got := strings.Join(names, " "); !strings.HasPrefix(got, "abs abshost climb dirlink etc fifo rel") {
		t.Errorf("readdir /: %s", got)
	}
}

func TestInRootRefusesSpecialFiles(t *testing.T) {
	root, _ := inRootTree(t)
	// A FIFO would block an open; a device node would open the host's device.
	if f, err := OpenInRoot(root, "fifo"); err == nil || !strings.Contains(err.Error(), "/fifo is a FIFO") {
		t.Errorf("open fifo: %v", err)
		if f != nil {
			f.Close()
		}
	}
	if fi, err := StatInRoot(root, "fifo"); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("stat fifo: %v, %v", fi, err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/null", filepath.Join(root, "to-null")); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenInRoot(root, "to-null"); err == nil || !strings.Contains(err.Error(), "character device") {
			t.Errorf("open a link to a device: %v", err)
		}
	}
}

// TestInRootRaceRefused stands in for a symlink swapped in between resolving
// and opening: the kernel refuses to follow it.
func TestInRootRaceRefused(t *testing.T) {
	root, host := inRootTree(t)
	for _, p := range []string{"dirlink/secret", "rel", "etc/up/etc/real"} {
		f, err := openPath(root, p, true)
		if err == nil {
			f.Close()
			t.Errorf("openat2 followed a symlink in %s", p)
			continue
		}
		var esc *ErrEscape
		if !errors.As(err, &esc) || !strings.Contains(err.Error(), "changed into a symlink") {
			t.Errorf("%s: %v", p, err)
		}
	}
	// A symlink-free path is opened, and it is the image's file.
	f, err := openPath(root, strings.TrimPrefix(host, "/")+"/secret", true)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _ := f.Stat()
	want, _ := os.Stat(filepath.Join(root, host, "secret"))
	if !os.SameFile(got, want) {
		t.Error("openPath opened some other file than the image's")
	}
}
