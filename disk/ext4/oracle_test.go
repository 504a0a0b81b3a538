package ext4_test

// The harness's own check: the property tree unpacked on the host the way
// tar would, made into a filesystem by mkfs.ext4 -d, mounted and compared
// by the same walk and comparison as the writer's output. Then the model
// is changed field by field and each change must be reported, so a quiet
// comparison means something.
//
//	go test ./disk/ext4 -run PropertyOracle -v -ext4.oracle-mkfs

import (
	"archive/tar"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var flagOracle = flag.Bool("ext4.oracle-mkfs", false, "check the property harness against mkfs.ext4 -d of the same tree unpacked on the host (root)")

// mkfsCmp is what mkfs.ext4 -d (1.47) keeps: whole seconds of mtime, and
// only their low 32 bits; the root's mtime is the time of the run and its
// owner root, without setgid; atime, ctime and crtime come from the
// host; hard links to symlinks become separate symlinks (filtered out).
var mkfsCmp = cmpOpts{holes: true, mtime32: true}

func TestPropertyOracleMkfs(t *testing.T) {
	if !*flagOracle {
		t.Skip("checks the harness, not the writer: run with -ext4.oracle-mkfs")
	}
	needTool(t, "mkfs.ext4", "e2fsck")
	if os.Geteuid() != 0 {
		t.Skip("unpacking devices and owners on the host and the loop mount need root")
	}
	// mkfs.ext4 -d: its library adds a name to a directory by scanning it,
	// so the 100,000-entry directory would take many minutes.
	t.Run("mkfs-d", func(t *testing.T) {
		cfg := defaultConfig(*flagSeed)
		cfg.bigDir = min(cfg.bigDir, 5000)
		oracle(t, cfg, "mkfs.ext4 -d", func(t *testing.T, tr *tree, img string) {
			host := filepath.Join(t.TempDir(), "root")
			start := time.Now()
			if err := unpack(host, tr.entries, testEpoch); err != nil {
				t.Fatalf("unpacking on the host: %v", err)
			}
			t.Logf("unpacked in %v", time.Since(start).Round(time.Millisecond))
			mkfs(t, img, len(tr.entries), "-d", host)
		}, func(ms []mismatch) []mismatch {
			// mkfs.ext4 -d copies each name of a hard-linked symlink as a
			// symlink of its own (it only links other types).
			var out []mismatch
			for _, x := range ms {
				if x.kind == "hardlinked symlink" && (x.field == "hardlink" || x.field == "nlink" || x.field == "inode") {
					continue
				}
				if x.path == "" && x.field == "mode" && strings.TrimPrefix(x.want, "0") == "2"+strings.TrimPrefix(x.got, "0") {
					continue // nor does it keep the root's setgid bit
				}
				out = append(out, x)
			}
			return out
		}, mkfsCmp)
	})
	// The kernel: the tree unpacked into an empty ext4 mounted read-write;
	// it keeps everything but atime, ctime and crtime.
	t.Run("kernel", func(t *testing.T) {
		oracle(t, defaultConfig(*flagSeed), "kernel", func(t *testing.T, tr *tree, img string) {
			mkfs(t, img, len(tr.entries))
			mnt := t.TempDir()
			if out, err := exec.Command("mount", "-t", "ext4", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
				t.Fatalf("mount: %v\n%s", err, out)
			}
			start := time.Now()
			err := unpack(mnt, tr.entries, testEpoch)
			if out, uerr := exec.Command("umount", mnt).CombinedOutput(); uerr != nil {
				t.Fatalf("umount: %v\n%s", uerr, out)
			}
			if err != nil {
				t.Fatalf("unpacking into the mount: %v", err)
			}
			t.Logf("unpacked in %v", time.Since(start).Round(time.Millisecond))
		}, func(ms []mismatch) []mismatch {
			// Writing a time at the ends of the range, the kernel clamps
			// it and drops the nanoseconds (timestamp_truncate).
			var out []mismatch
			for _, x := range ms {
				if x.field == "mtime" && (strings.HasPrefix(x.want, fmt.Sprintf("%d.", minTime)) || strings.HasPrefix(x.want, fmt.Sprintf("%d.", maxTime))) && strings.HasSuffix(strings.Fields(x.got)[0], ".000000000") {
					continue
				}
				out = append(out, x)
			}
			return out
		}, cmpOpts{nanos: true, rootMtime: true, holes: true, rootOwner: true})
	})
}

func mkfs(t *testing.T, img string, entries int, args ...string) {
	t.Helper()
	start := time.Now()
	args = append([]string{"-q", "-F", "-b", "4096", "-I", "256", "-N", fmt.Sprint(entries + 100000)}, args...)
	if out, err := exec.Command("mkfs.ext4", append(args, img)...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %v: %v\n%s", args, err, out)
	}
	t.Logf("mkfs.ext4 %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
}

// oracle makes an image of cfg's tree with make instead of the writer,
// and checks it as the property test does.
func oracle(t *testing.T, cfg genConfig, what string, make func(*testing.T, *tree, string), filter func([]mismatch) []mismatch, o cmpOpts) {
	start := time.Now()
	tr := generate(cfg)
	m, err := buildModel(tr, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d: %s; generated in %v", cfg.seed, treeStats(tr), time.Since(start).Round(time.Millisecond))
	img := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(cfg.fsSize)
	f.Close()
	make(t, tr, img)
	keepOnFailure(t, img)
	fr := fsck(t, img)
	mnt := mountRO(t, img)
	start = time.Now()
	act, err := walkMount(mnt, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("walk of %d names: %v", len(act), time.Since(start).Round(time.Millisecond))
	checkPre1970(t, fr.pre1970, m, act)
	ms := compare(m, act, o)
	if filter != nil {
		ms = filter(ms)
	}
	reportMismatches(t, what+" vs input", ms)

	// Every kind of difference is found.
	pick := func(ok func(p string, n *node) bool) (string, *node) {
		for _, p := range []string{"x-all", "hl-a", "sym-61", "chr-4095-1048575", "t-pre1970", "x-dir"} {
			if n := m.nodes[p]; n != nil && ok(p, n) {
				return p, n
			}
		}
		t.Fatal("no node to change")
		return "", nil
	}
	is := func(typ uint32) func(string, *node) bool {
		return func(_ string, n *node) bool { return n.typ == typ }
	}
	hasX := func(_ string, n *node) bool { return len(n.xattrs) > 0 }
	for _, c := range []struct {
		field string
		node  func(string, *node) bool
		apply func(m *model, p string, n *node) func()
	}{
		{"type", is(unix.S_IFREG), func(_ *model, _ string, n *node) func() { n.typ = unix.S_IFIFO; return func() { n.typ = unix.S_IFREG } }},
		{"mode", is(unix.S_IFREG), func(_ *model, _ string, n *node) func() { n.perm ^= 0o4000; return func() { n.perm ^= 0o4000 } }},
		{"uid", is(unix.S_IFREG), func(_ *model, _ string, n *node) func() { n.uid++; return func() { n.uid-- } }},
		{"gid", is(unix.S_IFDIR), func(_ *model, _ string, n *node) func() { n.gid++; return func() { n.gid-- } }},
		{"size", is(unix.S_IFLNK), func(_ *model, _ string, n *node) func() { n.size++; return func() { n.size-- } }},
		{"content", is(unix.S_IFREG), func(_ *model, _ string, n *node) func() {
			d := n.digest
			n.digest = "0000"
			return func() { n.digest = d }
		}},
		{"target", is(unix.S_IFLNK), func(_ *model, _ string, n *node) func() {
			t := n.target
			n.target += "x"
			return func() { n.target = t }
		}},
		{"rdev", is(unix.S_IFCHR), func(_ *model, _ string, n *node) func() { n.minor--; return func() { n.minor++ } }},
		{"xattrs", hasX, func(_ *model, _ string, n *node) func() {
			for k, v := range n.xattrs {
				n.xattrs[k] = v + "!"
				return func() { n.xattrs[k] = v }
			}
			return nil
		}},
		{"xattrs", hasX, func(_ *model, _ string, n *node) func() {
			n.xattrs["user.not-there"] = "x"
			return func() { delete(n.xattrs, "user.not-there") }
		}},
		{"mtime", is(unix.S_IFREG), func(_ *model, _ string, n *node) func() {
			t := n.mtime
			n.mtime = t.Add(-time.Second)
			return func() { n.mtime = t }
		}},
		{"nlink", is(unix.S_IFDIR), func(_ *model, _ string, n *node) func() { n.subdirs++; return func() { n.subdirs-- } }},
		{"hardlink", func(p string, n *node) bool { return len(n.paths) > 2 }, func(m *model, _ string, n *node) func() {
			// Two names the model says are one inode, on disk two inodes.
			q := n.paths[1]
			other := m.nodes["x-all"]
			n.paths[1] = other.paths[0]
			return func() { n.paths[1] = q }
		}},
		{"inode", func(p string, n *node) bool { return len(n.paths) > 2 }, func(m *model, _ string, n *node) func() {
			q := n.paths[2]
			cp := *n
			cp.paths = []string{q}
			m.nodes[q] = &cp
			return func() { m.nodes[q] = n }
		}},
		{"presence", is(unix.S_IFREG), func(m *model, p string, n *node) func() {
			m.nodes[p+"-ghost"] = n
			return func() { delete(m.nodes, p+"-ghost") }
		}},
		{"presence", is(unix.S_IFREG), func(m *model, p string, n *node) func() {
			delete(m.nodes, p)
			return func() { m.nodes[p] = n }
		}},
	} {
		p, n := pick(c.node)
		undo := c.apply(m, p, n)
		ms := compare(m, act, o)
		undo()
		found := false
		for _, x := range ms {
			if x.field == c.field {
				found = true
			}
		}
		if !found {
			t.Errorf("changing the model's %s of %s: the comparison did not report it (got %v)", c.field, show(p), ms)
		}
	}
}

// unpack makes the tree in dir the way tar as root would: everything made
// first, then owners, modes, xattrs (a default ACL would otherwise pass on
// to children made later, and chown drops capabilities), then times.
// Directories the stream does not name are 0755, root's, with the epoch as
// mtime. It works relative to directory descriptors: the deep chain is
// longer than PATH_MAX.
func unpack(dir string, entries []*entry, epoch int64) error {
	old := unix.Umask(0)
	defer unix.Umask(old)
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return err
	}
	rootfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootfd)
	// The last directory opened, kept for the next entry (most share it).
	cachePath, cacheFD := "", -1
	defer func() {
		if cacheFD >= 0 {
			unix.Close(cacheFD)
		}
	}()
	openDir := func(p string) (int, error) {
		if p == "" {
			return unix.Dup(rootfd)
		}
		fd, err := unix.Dup(rootfd)
		if err != nil {
			return -1, err
		}
		for _, c := range strings.Split(p, "/") {
			nfd, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			unix.Close(fd)
			if err != nil {
				return -1, fmt.Errorf("open %s: %w", show(p), err)
			}
			fd = nfd
		}
		return fd, nil
	}
	parent := func(p string) (int, string, error) {
		dp := parentOf(p)
		if cacheFD < 0 || cachePath != dp {
			fd, err := openDir(dp)
			if err != nil {
				return -1, "", err
			}
			if cacheFD >= 0 {
				unix.Close(cacheFD)
			}
			cachePath, cacheFD = dp, fd
		}
		return cacheFD, baseOf(p), nil
	}
	exists := map[string]bool{"": true}
	var implicit []string
	var metas []*tar.Header
	var rootHdr *tar.Header
	for _, e := range entries {
		h := e.hdr
		p := canon(h.Name)
		if p == "" {
			rootHdr = h
			continue
		}
		var missing []string
		for a := parentOf(p); a != "" && !exists[a]; a = parentOf(a) {
			missing = append(missing, a)
		}
		for i := len(missing) - 1; i >= 0; i-- {
			a := missing[i]
			fd, name, err := parent(a)
			if err != nil {
				return err
			}
			if err := unix.Mkdirat(fd, name, 0o755); err != nil {
				return fmt.Errorf("mkdir %s: %w", show(a), err)
			}
			exists[a] = true
			implicit = append(implicit, a)
		}
		fd, name, err := parent(p)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if !exists[p] {
				err = unix.Mkdirat(fd, name, 0o700)
			}
		case tar.TypeReg:
			if isSock(h) {
				err = unix.Mknodat(fd, name, unix.S_IFSOCK|0o600, 0)
				break
			}
			var ffd int
			ffd, err = unix.Openat(fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
			if err != nil {
				break
			}
			for _, s := range e.data.segs {
				buf := make([]byte, s.n)
				e.data.readAt(buf, s.off)
				if _, err = unix.Pwrite(ffd, buf, s.off); err != nil {
					break
				}
			}
			if err == nil {
				err = unix.Ftruncate(ffd, e.data.size)
			}
			unix.Close(ffd)
		case tar.TypeSymlink:
			err = unix.Symlinkat(h.Linkname, fd, name)
		case tar.TypeLink:
			var tfd int
			tfd, err = openDir(parentOf(canon(h.Linkname)))
			if err == nil {
				err = unix.Linkat(tfd, baseOf(canon(h.Linkname)), fd, name, 0)
				unix.Close(tfd)
			}
		case tar.TypeChar:
			err = unix.Mknodat(fd, name, unix.S_IFCHR|0o600, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))))
		case tar.TypeBlock:
			err = unix.Mknodat(fd, name, unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))))
		case tar.TypeFifo:
			err = unix.Mknodat(fd, name, unix.S_IFIFO|0o600, 0)
		default:
			err = fmt.Errorf("type %q", h.Typeflag)
		}
		if err != nil {
			return fmt.Errorf("making %s: %w", show(p), err)
		}
		exists[p] = true
		if h.Typeflag != tar.TypeLink {
			metas = append(metas, h)
		}
	}
	if rootHdr != nil {
		metas = append(metas, rootHdr)
	}
	// Owners, modes, xattrs.
	for _, h := range metas {
		p := canon(h.Name)
		fd, name := rootfd, "."
		if p != "" {
			var err error
			if fd, name, err = parent(p); err != nil {
				return err
			}
		}
		if err := unix.Fchownat(fd, name, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %s: %w", show(p), err)
		}
		if h.Typeflag != tar.TypeSymlink {
			if err := unix.Fchmodat(fd, name, uint32(h.Mode&0o7777), 0); err != nil {
				return fmt.Errorf("chmod %s: %w", show(p), err)
			}
		}
		xp := fmt.Sprintf("/proc/self/fd/%d/%s", fd, name)
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if err := unix.Lsetxattr(xp, x, []byte(v), 0); err != nil {
					return fmt.Errorf("setxattr %s on %s: %w", x, show(p), err)
				}
			}
		}
	}
	// Times last: making a child changes its directory's mtime.
	setTimes := func(p string, mt time.Time) error {
		fd, name := rootfd, "."
		if p != "" {
			var err error
			if fd, name, err = parent(p); err != nil {
				return err
			}
		}
		tsp := unix.Timespec{Sec: mt.Unix(), Nsec: int64(mt.Nanosecond())}
		if err := unix.UtimesNanoAt(fd, name, []unix.Timespec{tsp, tsp}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("utimes %s: %w", show(p), err)
		}
		return nil
	}
	for _, p := range implicit {
		if err := setTimes(p, time.Unix(epoch, 0)); err != nil {
			return err
		}
	}
	for _, h := range metas {
		if err := setTimes(canon(h.Name), h.ModTime); err != nil {
			return err
		}
	}
	return nil
}
