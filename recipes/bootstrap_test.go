package recipes

import (
	"strings"
	"testing"
)

func TestBootstrapSources(t *testing.T) {
	for _, tc := range []struct {
		name string
		bs   Bootstrap
		want []string // source lines
		err  string
	}{
		{"default mirror", Bootstrap{Suite: "bookworm"}, []string{
			"deb https://deb.debian.org/debian bookworm main",
			"deb https://deb.debian.org/debian bookworm-updates main",
			"deb https://deb.debian.org/debian-security bookworm-security main",
		}, ""},
		{"http keeps its scheme", Bootstrap{Suite: "trixie", Mirror: "http://deb.debian.org/debian/"}, []string{
			"deb http://deb.debian.org/debian/ trixie main",
			"deb http://deb.debian.org/debian/ trixie-updates main",
			"deb http://deb.debian.org/debian-security trixie-security main",
		}, ""},
		{"sid has neither", Bootstrap{Suite: "sid"}, []string{"deb https://deb.debian.org/debian sid main"}, ""},
		{"unstable has neither", Bootstrap{Suite: "unstable"}, []string{"deb https://deb.debian.org/debian unstable main"}, ""},
		{"security none", Bootstrap{Suite: "bookworm", SecurityMirror: "none"}, []string{
			"deb https://deb.debian.org/debian bookworm main",
			"deb https://deb.debian.org/debian bookworm-updates main",
		}, ""},
		{"other mirror must name its security archive", Bootstrap{Suite: "bookworm", Mirror: "http://mirror.example/debian"}, nil,
			"bookworm-security comes from the security archive, which mirror http://mirror.example/debian may not carry: set security_mirror"},
		{"other mirror with security", Bootstrap{Suite: "bookworm", Mirror: "http://m.example/debian", SecurityMirror: "http://m.example/sec"}, []string{
			"deb http://m.example/debian bookworm main",
			"deb http://m.example/debian bookworm-updates main",
			"deb http://m.example/sec bookworm-security main",
		}, ""},
		{"explicit suites", Bootstrap{Suite: "bookworm", Suites: []string{"bookworm", "bookworm-backports"}}, []string{
			"deb https://deb.debian.org/debian bookworm main",
			"deb https://deb.debian.org/debian bookworm-backports main",
		}, ""},
		{"suites without the suite", Bootstrap{Suite: "bookworm", Suites: []string{"bookworm-updates"}}, nil, "must include the suite bookworm"},
		{"security suite with none", Bootstrap{Suite: "bookworm", SecurityMirror: "none", Suites: []string{"bookworm", "bookworm-security"}}, nil, "security_mirror is none"},
		{"snapshot", Bootstrap{Suite: "bookworm", Snapshot: "20240115T000000Z"}, []string{
			"deb [check-valid-until=no] https://snapshot.debian.org/archive/debian/20240115T000000Z bookworm main",
			"deb [check-valid-until=no] https://snapshot.debian.org/archive/debian/20240115T000000Z bookworm-updates main",
			"deb [check-valid-until=no] https://snapshot.debian.org/archive/debian-security/20240115T000000Z bookworm-security main",
		}, ""},
		{"snapshot with a mirror", Bootstrap{Suite: "bookworm", Snapshot: "20240115T000000Z", Mirror: "http://deb.debian.org/debian"}, nil, "leave mirror and security_mirror out"},
		{"bad snapshot", Bootstrap{Suite: "bookworm", Snapshot: "2024-01-15"}, nil, "not a snapshot.debian.org timestamp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srcs, err := tc.bs.Sources()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range srcs {
				got = append(got, s.Line())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestBootstrapParseNewKeys(t *testing.T) {
	r, err := Parse("r.yaml", []byte("name: x\nfrom:\n  bootstrap:\n    distro: debian\n    suite: bookworm\n    security_mirror: none\n    suites: [bookworm]\n    snapshot: 20240115T000000Z\n"))
	if err != nil {
		t.Fatal(err)
	}
	bs := r.From.Bootstrap
	if bs.SecurityMirror != "none" || len(bs.Suites) != 1 || bs.Snapshot != "20240115T000000Z" {
		t.Errorf("bootstrap = %+v", bs)
	}
	_, err = Parse("r.yaml", []byte("name: x\nfrom:\n  bootstrap: {distro: debian, suite: b, snapshot: yesterday}\n"))
	if err == nil || !strings.Contains(err.Error(), `snapshot "yesterday" is not a snapshot.debian.org timestamp`) {
		t.Errorf("err = %v", err)
	}
}
