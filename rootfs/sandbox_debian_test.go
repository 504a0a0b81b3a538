package rootfs

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSandboxDebianStep runs an ordinary package-installing step in a
// Debian root under the confined sandbox: apt's privilege drop to _apt,
// dpkg's maintainer scripts, useradd and chown, writes to /dev/null. It
// needs a Debian tree (mmdebstrap --variant=minbase bookworm DIR) named by
// LAYERIMG_TEST_DEBIAN_ROOTFS, and the network.
func TestSandboxDebianStep(t *testing.T) {
	needSandbox(t)
	lower := os.Getenv("LAYERIMG_TEST_DEBIAN_ROOTFS")
	if lower == "" {
		t.Skip("set LAYERIMG_TEST_DEBIAN_ROOTFS to a Debian root directory")
	}
	scratch := t.TempDir()
	spec := RunSpec{
		Lowers: []string{lower},
		Argv: []string{"/bin/sh", "-ec", `
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hello >/dev/null
hello
useradd -m builder
echo hi > /home/builder/f && chown builder:builder /home/builder/f
su builder -c 'id -un' 
dpkg -s hello | grep -q 'Status: install ok installed'
echo step-done`},
		Env:        []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"},
		Network:    "host",
		Hostname:   "layerimg",
		ResolvConf: true,
	}
	if err := spec.InScratch(scratch); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := Run(ctx, spec, &out); err != nil {
		t.Fatalf("debian step: %v\n%s", err, out.String())
	}
	for _, want := range []string{"Hello, world!", "builder", "step-done"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
