package provenance

import (
	"os"
	"path/filepath"
	"testing"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDetectSourceCI(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want Source
	}{
		{"github", map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "o/r", "GITHUB_SHA": sha, "GITHUB_REF": "refs/tags/v1",
			"GITHUB_RUN_ID": "7", "GITHUB_RUN_ATTEMPT": "2"},
			Source{CI: "github-actions", Repo: "git+https://github.com/o/r", Commit: sha, Ref: "refs/tags/v1", InvocationID: "https://github.com/o/r/actions/runs/7/attempts/2"}},
		{"gitlab", map[string]string{"GITLAB_CI": "true", "CI_PROJECT_URL": "https://gitlab.example/g/p", "CI_COMMIT_SHA": sha,
			"CI_COMMIT_REF_NAME": "main", "CI_JOB_URL": "https://gitlab.example/g/p/-/jobs/9"},
			Source{CI: "gitlab-ci", Repo: "git+https://gitlab.example/g/p", Commit: sha, Ref: "refs/heads/main", InvocationID: "https://gitlab.example/g/p/-/jobs/9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := DetectSource(t.TempDir(), env(tc.env))
			if got == nil || *got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDetectSourceGit(t *testing.T) {
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(s), 0o644)
	}
	config := "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = https://user:tok3n@git.example/org/images.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n"
	for _, tc := range []struct {
		name  string
		setup func(root string)
		want  *Source
	}{
		{"loose ref", func(root string) {
			write(filepath.Join(root, ".git/HEAD"), "ref: refs/heads/main\n")
			write(filepath.Join(root, ".git/refs/heads/main"), sha+"\n")
			write(filepath.Join(root, ".git/config"), config)
		}, &Source{Repo: "git+https://git.example/org/images.git", Commit: sha, Ref: "refs/heads/main"}},
		{"packed ref", func(root string) {
			write(filepath.Join(root, ".git/HEAD"), "ref: refs/heads/main\n")
			write(filepath.Join(root, ".git/packed-refs"), "# pack-refs with: peeled fully-peeled sorted\n"+sha+" refs/heads/main\n")
		}, &Source{Commit: sha, Ref: "refs/heads/main"}},
		{"detached worktree", func(root string) {
			common := filepath.Join(root, "main.git")
			write(filepath.Join(common, "config"), config)
			wt := filepath.Join(common, "worktrees", "wt")
			write(filepath.Join(wt, "HEAD"), sha+"\n")
			write(filepath.Join(wt, "commondir"), "../..\n")
			write(filepath.Join(root, ".git"), "gitdir: "+wt+"\n")
		}, &Source{Repo: "git+https://git.example/org/images.git", Commit: sha}},
		{"unborn branch", func(root string) {
			write(filepath.Join(root, ".git/HEAD"), "ref: refs/heads/main\n")
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.setup(root)
			sub := filepath.Join(root, "recipes", "x")
			os.MkdirAll(sub, 0o755)
			got := DetectSource(sub, env(nil))
			if got != nil {
				if got.Root != root {
					t.Errorf("root %q, want %q", got.Root, root)
				}
				if rel := got.Rel(filepath.Join(sub, "r.yaml")); rel != "recipes/x/r.yaml" {
					t.Errorf("Rel: %q", rel)
				}
				got.Root = ""
			}
			if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
