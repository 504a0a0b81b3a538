package e2e_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/internal/debian"
	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/recipes"
)

// The debian-cloud example, with no line about security, is built from
// bookworm, bookworm-updates and bookworm-security: apt-get, run inside the
// built image against the same mirrors, has no security update to make,
// and libssl3 is bookworm-security's current version.
func TestFreshBaseNothingPendingFromSecurity(t *testing.T) {
	fx := debianCloud(t)
	if fx.Res.Base.Key == "" {
		t.Fatalf("debian-cloud's base has no key: %+v", fx.Res.Base)
	}
	// The manifest records the mirror state the base was built from.
	var suites []string
	for _, m := range fx.Res.Base.Mirrors {
		suites = append(suites, m.Name())
		if !strings.HasPrefix(m.InRelease, "sha256:") || !strings.HasSuffix(m.URL, "/dists/"+m.Suite+"/InRelease") {
			t.Errorf("mirror state %+v", m)
		}
	}
	if strings.Join(suites, ", ") != "debian bookworm, debian bookworm-updates, debian-security bookworm-security" {
		t.Errorf("the base's mirror state names %v", suites)
	}
	root := unpackImage(t, fx.Opts.OCILayout)

	sources, err := os.ReadFile(filepath.Join(root, "etc/apt/sources.list"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"deb http://deb.debian.org/debian bookworm main",
		"deb http://deb.debian.org/debian bookworm-updates main",
		"deb http://deb.debian.org/debian-security bookworm-security main",
	} {
		if !strings.Contains(string(sources), want+"\n") {
			t.Errorf("sources.list lacks %q:\n%s", want, sources)
		}
	}

	// The independent oracle: apt itself, in the image, against the mirrors.
	hostResolv, err := os.ReadFile("/etc/resolv.conf")
	if err == nil {
		os.Remove(filepath.Join(root, "etc/resolv.conf"))
		os.WriteFile(filepath.Join(root, "etc/resolv.conf"), hostResolv, 0o644)
	}
	apt := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("chroot", append([]string{root}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("chroot %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// _apt cannot be switched to without the image's /proc; root fetches.
	apt("apt-get", "-o", "APT::Sandbox::User=root", "-q", "update")
	sim := apt("apt-get", "-o", "APT::Sandbox::User=root", "-o", "Debug::NoLocking=1", "-s", "upgrade")
	var pending, security []string
	for _, line := range strings.Split(sim, "\n") {
		if !strings.HasPrefix(line, "Inst ") {
			continue
		}
		pending = append(pending, line)
		if strings.Contains(line, "-security") || strings.Contains(line, "Debian-Security") {
			security = append(security, line)
		}
	}
	if len(security) > 0 {
		t.Errorf("apt-get -s upgrade in the built image lists security updates:\n%s", strings.Join(security, "\n"))
	}
	t.Logf("apt-get -s upgrade: %d pending (%d from security)", len(pending), len(security))
	for _, l := range pending {
		t.Log(l)
	}

	// layerimg outdated, from the build's cache, agrees with apt.
	r, err := recipes.Load("../recipes/examples/debian-cloud.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := layerimg.Outdated(context.Background(), r, fx.Opts, layerimg.OutdatedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Image != "image" || rep.Installed < 100 || !strings.Contains(rep.Verified, "InRelease signatures by") {
		t.Errorf("outdated read %s (%d packages), verified %q", rep.Image, rep.Installed, rep.Verified)
	}
	var ours, apts []string
	for _, u := range rep.Updates {
		ours = append(ours, u.Name)
	}
	// apt-get upgrade keeps back what needs a new package; apt list
	// --upgradable lists every installed package with a newer candidate,
	// which is what outdated lists.
	for _, l := range strings.Split(apt("apt", "-o", "APT::Sandbox::User=root", "list", "--upgradable"), "\n") {
		if name, rest, ok := strings.Cut(l, "/"); ok && strings.Contains(rest, "[upgradable from:") {
			apts = append(apts, name)
			if strings.Contains(strings.Fields(rest)[0], "-security") {
				t.Errorf("apt list --upgradable: a security update is pending: %s", l)
			}
		}
	}
	sort.Strings(apts)
	sort.Strings(ours)
	if strings.Join(ours, " ") != strings.Join(apts, " ") || rep.Security() != 0 {
		t.Errorf("layerimg outdated lists %v (%d security), apt-get -s upgrade %v", ours, rep.Security(), apts)
	}
	for _, s := range rep.Sources {
		t.Logf("%s %s: InRelease %s (built from %s), signed by %s", s.Archive, s.Suite, s.InRelease, s.Built, s.Signer)
	}

	// libssl3: the image's version is the one bookworm-security has now.
	have := strings.TrimSpace(apt("dpkg-query", "-W", "-f", "${Version}", "libssl3"))
	madison := apt("apt-cache", "madison", "libssl3")
	m := regexp.MustCompile(`(?m)^\s*libssl3 \| (\S+) \| \S+ bookworm-security/main`).FindStringSubmatch(madison)
	if m == nil {
		t.Fatalf("bookworm-security has no libssl3 by apt-cache madison:\n%s", madison)
	}
	if have != m[1] {
		t.Errorf("libssl3 in the image is %s, bookworm-security has %s", have, m[1])
	}
	t.Logf("libssl3 %s (bookworm-security %s)", have, m[1])
}

// unpackImage extracts the image in the OCI layout at dir, whiteouts
// applied, into a temporary folder with owners, modes and device nodes
// kept (tar as root).
func unpackImage(t *testing.T, dir string) string {
	t.Helper()
	root := t.TempDir()
	rc := mutate.Extract(layoutImage(t, dir))
	defer rc.Close()
	cmd := exec.Command("tar", "-x", "-p", "--numeric-owner", "-f", "-", "-C", root)
	cmd.Stdin = rc
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpacking the image: %v\n%s", err, out)
	}
	io.Copy(io.Discard, rc)
	return root
}

// outdated's arithmetic against apt's on a real, stale package set: the
// host's own dpkg status, against bookworm, bookworm-updates and
// bookworm-security as they are now. apt reads the same suites into a
// lists dir of its own (the host's apt state is left alone); both must
// name the same packages and candidate versions.
func TestOutdatedAgreesWithApt(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: downloads bookworm's Packages indexes")
	}
	for _, tool := range []string{"apt-get", "apt"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (Debian's apt)", tool)
		}
	}
	status := "/var/lib/dpkg/status"
	data, err := os.ReadFile(status)
	if err != nil {
		t.Fatalf("this test reads a Debian host's dpkg status: %v", err)
	}
	installed, err := debian.ReadStatus(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	srcs, err := recipes.Bootstrap{Suite: "bookworm", Mirror: "http://deb.debian.org/debian"}.Sources()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := debian.ReadKeyring(layerimg.DefaultKeyring)
	if err != nil {
		t.Fatal(err)
	}
	var idx []*debian.Index
	var lines []string
	for _, s := range srcs {
		ix, err := debian.LoadIndex(ctx, func(ctx context.Context, url string, limit int64) ([]byte, error) {
			return layers.FetchMirrorFile(ctx, url, 5*time.Minute, limit)
		}, s, "amd64", kr)
		if err != nil {
			t.Fatal(err)
		}
		idx = append(idx, ix)
		lines = append(lines, s.Line())
	}
	var ours []string
	for _, u := range debian.Pending(installed, idx) {
		ours = append(ours, u.Name+"="+u.Candidate)
	}

	dir := t.TempDir()
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "sources.list"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	opts := []string{"-o", "Dir::State::Lists=" + dir + "/lists", "-o", "Dir::Cache=" + dir + "/cache",
		"-o", "Dir::Etc::SourceList=" + dir + "/sources.list", "-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Status=" + status, "-o", "APT::Architecture=amd64", "-o", "APT::Sandbox::User=root",
		"-o", "Debug::NoLocking=1", "-o", "Dir::Etc::Preferences=/dev/null", "-o", "Dir::Etc::PreferencesParts=/dev/null"}
	if out, err := exec.Command("apt-get", append(opts, "-q", "update")...).CombinedOutput(); err != nil {
		t.Fatalf("apt-get update: %v\n%s", err, out)
	}
	out, err := exec.Command("apt", append(opts, "list", "--upgradable")...).Output()
	if err != nil {
		t.Fatalf("apt list --upgradable: %v", err)
	}
	var apts []string
	for _, l := range strings.Split(string(out), "\n") {
		if name, rest, ok := strings.Cut(l, "/"); ok && strings.Contains(rest, "[upgradable from:") {
			apts = append(apts, name+"="+strings.Fields(rest)[1])
		}
	}
	sort.Strings(ours)
	sort.Strings(apts)
	if strings.Join(ours, "\n") != strings.Join(apts, "\n") {
		t.Errorf("outdated:\n%s\napt list --upgradable:\n%s", strings.Join(ours, "\n"), strings.Join(apts, "\n"))
	}
	t.Logf("host: %d installed, %d pending by both", len(installed), len(ours))
}
