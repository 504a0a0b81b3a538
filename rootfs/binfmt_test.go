package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real entry Debian 12's qemu-user-static registers.
const aarch64Entry = `enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
`

func TestCheckEmulation(t *testing.T) {
	for _, tc := range []struct {
		name           string
		host, platform string
		files          map[string]string // under proc/sys/fs/binfmt_misc; nil: not mounted
		want           []string          // in the error; none: no error
	}{
		{name: "native", host: "arm64", platform: "linux/arm64"},
		{name: "native amd64", host: "amd64", platform: "linux/amd64"},
		{name: "386 on amd64", host: "amd64", platform: "linux/386"},
		{name: "registered", host: "amd64", platform: "linux/arm64",
			files: map[string]string{"status": "enabled\n", "qemu-aarch64": aarch64Entry}},
		{name: "variant", host: "amd64", platform: "linux/arm64/v8",
			files: map[string]string{"status": "enabled\n", "qemu-aarch64": aarch64Entry}},
		{name: "other name, same magic", host: "amd64", platform: "linux/arm64",
			files: map[string]string{"status": "enabled\n", "register": "", "python3.11": "enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n", "aarch64": aarch64Entry}},
		{name: "not mounted", host: "amd64", platform: "linux/arm64",
			want: []string{"binfmt_misc is not mounted", "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc", "apt-get install qemu-user-static binfmt-support", "update-binfmts --enable qemu-aarch64"}},
		{name: "all disabled", host: "amd64", platform: "linux/arm64",
			files: map[string]string{"status": "disabled\n", "qemu-aarch64": aarch64Entry},
			want:  []string{"binfmt_misc is disabled", "echo 1 > /proc/sys/fs/binfmt_misc/status"}},
		{name: "none registered", host: "amd64", platform: "linux/arm64",
			files: map[string]string{"status": "enabled\n", "register": "", "qemu-arm": strings.Replace(aarch64Entry, "b700", "2800", 1)},
			want:  []string{"linux/arm64", "no binfmt_misc handler for aarch64", "apt-get install qemu-user-static binfmt-support", "update-binfmts --enable qemu-aarch64"}},
		{name: "handler disabled", host: "amd64", platform: "linux/arm64",
			files: map[string]string{"status": "enabled\n", "qemu-aarch64": strings.Replace(aarch64Entry, "enabled", "disabled", 1)},
			want:  []string{"handler qemu-aarch64 is disabled", "update-binfmts --enable qemu-aarch64"}},
		{name: "no F flag", host: "amd64", platform: "linux/arm64",
			files: map[string]string{"status": "enabled\n", "qemu-aarch64": strings.Replace(strings.Replace(aarch64Entry, "flags: PF", "flags: P", 1), "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "/usr/bin/qemu-aarch64", 1)},
			want:  []string{"lacks the F flag", "/usr/bin/qemu-aarch64", "apt-get install qemu-user-static"}},
		{name: "amd64 on arm64", host: "arm64", platform: "linux/amd64",
			files: map[string]string{"status": "enabled\n"},
			want:  []string{"no binfmt_misc handler for x86_64", "update-binfmts --enable qemu-x86_64"}},
		{name: "unknown arch", host: "amd64", platform: "linux/mips64le",
			want: []string{"no emulation known for mips64le"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.files != nil {
				dir := filepath.Join(root, binfmtDir)
				os.MkdirAll(dir, 0o755)
				for n, body := range tc.files {
					os.WriteFile(filepath.Join(dir, n), []byte(body), 0o644)
				}
			}
			err := CheckEmulation(root, tc.host, tc.platform)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
