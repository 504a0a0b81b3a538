package provenance

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// Source is where the build's inputs came from and which run built them.
type Source struct {
	// Repo is the repository's URL (git+https://...), Commit its sha1.
	Repo, Commit, Ref string
	// InvocationID is the CI run's URL, empty outside CI.
	InvocationID string
	// CI names the CI system: "github-actions", "gitlab-ci" or "".
	CI string
	// Root is the checkout's directory, when known: paths in the
	// statement are relative to it, so that they read the same on every
	// machine.
	Root string
}

// Rel is path relative to the checkout's root when it is inside it, else
// the file's name; with forward slashes.
func (s *Source) Rel(path string) string {
	if s != nil && s.Root != "" {
		if abs, err := filepath.Abs(path); err == nil {
			if r, err := filepath.Rel(s.Root, abs); err == nil && r != ".." && !strings.HasPrefix(r, "../") {
				return filepath.ToSlash(r)
			}
		}
	}
	// Outside a checkout the path as given would tie the statement to this
	// machine's folders (and its user's name): the file's name alone.
	return filepath.Base(path)
}

// DetectSource reads the CI environment (GitHub Actions, GitLab CI) and,
// outside CI, the git checkout holding dir. getenv is os.Getenv but for
// tests. Nil when none of them says anything.
func DetectSource(dir string, getenv func(string) string) *Source {
	if getenv("GITHUB_ACTIONS") == "true" && getenv("GITHUB_REPOSITORY") != "" {
		server := strings.TrimSuffix(or(getenv("GITHUB_SERVER_URL"), "https://github.com"), "/")
		s := &Source{CI: "github-actions", Repo: "git+" + server + "/" + getenv("GITHUB_REPOSITORY"),
			Commit: getenv("GITHUB_SHA"), Ref: getenv("GITHUB_REF"), Root: getenv("GITHUB_WORKSPACE")}
		if id := getenv("GITHUB_RUN_ID"); id != "" {
			s.InvocationID = server + "/" + getenv("GITHUB_REPOSITORY") + "/actions/runs/" + id
			if a := getenv("GITHUB_RUN_ATTEMPT"); a != "" {
				s.InvocationID += "/attempts/" + a
			}
		}
		return s
	}
	if getenv("GITLAB_CI") == "true" && getenv("CI_PROJECT_URL") != "" {
		s := &Source{CI: "gitlab-ci", Repo: "git+" + getenv("CI_PROJECT_URL"), Commit: getenv("CI_COMMIT_SHA"), Root: getenv("CI_PROJECT_DIR")}
		if r := getenv("CI_COMMIT_REF_NAME"); r != "" {
			s.Ref = "refs/heads/" + r
			if getenv("CI_COMMIT_TAG") != "" {
				s.Ref = "refs/tags/" + r
			}
		}
		s.InvocationID = getenv("CI_JOB_URL")
		if s.InvocationID == "" {
			s.InvocationID = getenv("CI_PIPELINE_URL")
		}
		return s
	}
	return gitCheckout(dir)
}

// gitCheckout reads the commit and origin URL of the git checkout holding
// dir straight from .git, without running git: HEAD, the ref it names
// (loose or packed), and config's remote "origin".
func gitCheckout(dir string) *Source {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	for d := abs; ; d = filepath.Dir(d) {
		gitDir := filepath.Join(d, ".git")
		if fi, err := os.Stat(gitDir); err == nil {
			if !fi.IsDir() { // a worktree or submodule: "gitdir: PATH"
				b, err := os.ReadFile(gitDir)
				if err != nil {
					return nil
				}
				p, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir: ")
				if !ok {
					return nil
				}
				if !filepath.IsAbs(p) {
					p = filepath.Join(d, p)
				}
				gitDir = p
			}
			s := readGit(gitDir)
			if s != nil {
				s.Root = d
			}
			return s
		}
		if filepath.Dir(d) == d {
			return nil
		}
	}
}

func readGit(gitDir string) *Source {
	common := gitDir
	if b, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		c := strings.TrimSpace(string(b))
		if !filepath.IsAbs(c) {
			c = filepath.Join(gitDir, c)
		}
		common = c
	}
	head, err := os.ReadFile(filepath.Join(gitDir, "HEAD"))
	if err != nil {
		return nil
	}
	s := &Source{}
	h := strings.TrimSpace(string(head))
	if ref, ok := strings.CutPrefix(h, "ref: "); ok {
		s.Ref = ref
		s.Commit = resolveRef(gitDir, common, ref)
	} else {
		s.Commit = h
	}
	if !isSHA(s.Commit) {
		return nil // an unborn branch: nothing committed to name
	}
	if u := originURL(filepath.Join(common, "config")); u != "" {
		s.Repo = "git+" + u
	}
	return s
}

func resolveRef(gitDir, common, ref string) string {
	for _, d := range []string{gitDir, common} {
		if b, err := os.ReadFile(filepath.Join(d, filepath.FromSlash(ref))); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	f, err := os.Open(filepath.Join(common, "packed-refs"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sha, name, ok := strings.Cut(sc.Text(), " ")
		if ok && name == ref {
			return sha
		}
	}
	return ""
}

// originURL is remote "origin"'s url in a git config file, without any
// user:password@ in it (a token in a clone URL is a secret).
func originURL(config string) string {
	b, err := os.ReadFile(config)
	if err != nil {
		return ""
	}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "[") {
			in = l == `[remote "origin"]`
			continue
		}
		if k, v, ok := strings.Cut(l, "="); in && ok && strings.TrimSpace(k) == "url" {
			return stripUserinfo(strings.TrimSpace(v))
		}
	}
	return ""
}

func stripUserinfo(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	if at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@"); at >= 0 {
		rest = rest[at+1:]
	}
	return scheme + "://" + rest
}

func isSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Descriptor is the source as a resource descriptor, for
// externalParameters.
func (s *Source) Descriptor() *ResourceDescriptor {
	if s == nil || s.Commit == "" {
		return nil
	}
	d := &ResourceDescriptor{URI: s.Repo, Digest: map[string]string{"gitCommit": s.Commit}}
	if s.Ref != "" {
		d.Annotations = map[string]any{"ref": s.Ref}
	}
	return d
}
