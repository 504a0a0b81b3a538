package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/internal/tartest"
	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/recipes"
)

func needAnsible(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		t.Fatal("ansible-playbook not found: apt-get install ansible-core (make deps does)")
	}
}

// A busybox image has no Python: these plays use raw tasks only, which is
// enough to prove the connection, the key, the check and the secrets in
// seconds. TestAnsibleDebian runs real modules.
const bbAnsibleRecipe = `args: {GREETING: hello}
  - name: before
    run: echo before > /before
  - name: play
    ansible:
      playbook: site.yml
      extra_vars: {greeting: "${GREETING}"}
`

var bbAnsibleFiles = map[string]string{
	"site.yml": `- hosts: all
  gather_facts: false
  roles: [hello]
`,
	"roles/hello/tasks/main.yml": `- name: write greeting
  raw: mkdir -p /etc && echo {{ greeting }} > /etc/greeting
  changed_when: false
`,
}

// bbAnsibleContext is busyboxContext with args declared first.
func bbAnsibleContext(t *testing.T, recipe string, files map[string]string) string {
	t.Helper()
	dir := busyboxContext(t, fixture(t, "bb-header.yaml")+recipe, files)
	raw, _ := os.ReadFile(filepath.Join(dir, "recipe.yaml"))
	body := string(raw)
	if i := strings.Index(body, "args: "); i >= 0 {
		j := strings.Index(body[i:], "\n")
		args := body[i : i+j+1]
		body = args + strings.Replace(body, args, "", 1)
	}
	os.WriteFile(filepath.Join(dir, "recipe.yaml"), []byte(body), 0o644)
	return dir
}

func TestAnsibleStepCache(t *testing.T) {
	needRoot(t)
	needAnsible(t)
	dir := bbAnsibleContext(t, bbAnsibleRecipe, bbAnsibleFiles)
	out := t.TempDir()
	var log bytes.Buffer
	o := layerimg.Options{CacheDir: t.TempDir(), Output: &log, RootfsTar: filepath.Join(out, "rootfs.tar"), Manifest: filepath.Join(out, "m.json")}
	ctx := context.Background()

	res := build(t, load(t, dir, map[string]string{"GREETING": "from-arg"}), o)
	if got := statuses(res.Steps); got != "busybox=MISS before=MISS play=MISS" {
		t.Fatalf("cold build: %s", got)
	}
	data, err := os.ReadFile(o.RootfsTar)
	if err != nil {
		t.Fatal(err)
	}
	entries := strings.Join(tartest.Summary(t, io.NopCloser(bytes.NewReader(data))), "\n")
	if !strings.Contains(entries, "etc/greeting f 0644 from-arg\n") {
		t.Errorf("the play's file is not in the image:\n%s", entries)
	}
	if strings.Contains(entries, "layerimg-ansible") {
		t.Errorf("ansible's working files reached the image:\n%s", entries)
	}
	if st := res.Steps[2].Ansible; st == nil || st.OK != 1 || st.Changed != 0 {
		t.Errorf("recap: %+v", st)
	}
	manifest, _ := os.ReadFile(o.Manifest)
	if !strings.Contains(string(manifest), `"ansible": {`) || !strings.Contains(string(manifest), `"ok": 1`) {
		t.Errorf("manifest lacks the recap: %s", manifest)
	}

	// Nothing changed: nothing runs.
	o.RootfsTar, o.Manifest = "", ""
	res = build(t, load(t, dir, map[string]string{"GREETING": "from-arg"}), o)
	if got := statuses(res.Steps); got != "busybox=HIT before=HIT play=HIT" || res.Executed != 0 {
		t.Fatalf("rebuild: %s", got)
	}

	// Touching a role's task file misses only that step, and says why.
	task := filepath.Join(dir, "roles/hello/tasks/main.yml")
	os.WriteFile(task, []byte(bbAnsibleFiles["roles/hello/tasks/main.yml"]+"# touched\n"), 0o644)
	plan, err := layerimg.Plan(ctx, load(t, dir, map[string]string{"GREETING": "from-arg"}), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(plan); got != "busybox=HIT before=HIT play=MISS" {
		t.Fatalf("plan after touching a task file: %s", got)
	}
	if !strings.Contains(plan[2].Why, "roles/hello/tasks/main.yml") {
		t.Errorf("why: %q", plan[2].Why)
	}
	// An arg that reaches extra_vars misses it too.
	plan, err = layerimg.Plan(ctx, load(t, dir, map[string]string{"GREETING": "other"}), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(plan); got != "busybox=HIT before=HIT play=MISS" {
		t.Fatalf("plan after an arg change: %s", got)
	}
}

func TestAnsibleCheckIdempotent(t *testing.T) {
	needRoot(t)
	needAnsible(t)
	files := map[string]string{
		"site.yml": `- hosts: all
  gather_facts: false
  tasks:
    - name: stays the same
      raw: echo same > /same
      changed_when: false
    - name: appends every time
      raw: echo again >> /log
`,
	}
	dir := bbAnsibleContext(t, `  - name: play
    check_idempotent: true
    ansible:
      playbook: site.yml
`, files)
	o := layerimg.Options{CacheDir: t.TempDir()}
	_, err := layerimg.Build(context.Background(), load(t, dir, nil), o)
	var ne *layers.NotIdempotentError
	if !errors.As(err, &ne) || len(ne.Tasks) != 1 || ne.Tasks[0] != "appends every time" {
		t.Fatalf("want the check to fail naming the task, got %v", err)
	}
	plan, err := layerimg.Plan(context.Background(), load(t, dir, nil), o)
	if err != nil {
		t.Fatal(err)
	}
	if !plan[1].CheckIdempotent || plan[1].Status != layerimg.Miss {
		t.Errorf("plan: %+v (a failed check caches nothing)", plan[1])
	}

	// Fixed with changed_when, the check passes and says so.
	files["site.yml"] = strings.Replace(files["site.yml"], "raw: echo again >> /log\n", "raw: echo again >> /log\n      changed_when: false\n", 1)
	os.WriteFile(filepath.Join(dir, "site.yml"), []byte(files["site.yml"]), 0o644)
	res := build(t, load(t, dir, nil), o)
	if st := res.Steps[1].Ansible; st == nil || !st.IdempotentChecked {
		t.Errorf("recap: %+v", st)
	}
}

func TestAnsibleSecretNeverKept(t *testing.T) {
	needRoot(t)
	needAnsible(t)
	const secret = "s3cr3t-ansible-token-42"
	files := map[string]string{
		"site.yml": `- hosts: all
  gather_facts: false
  tasks:
    - name: use the secret as a var
      raw: echo {{ layerimg_secrets.tok }} | wc -c > /tok-len
    - name: print it
      debug: {msg: "token is {{ layerimg_secrets.tok }}"}
    - name: use the secret as a file
      raw: wc -c < /run/secrets/tok > /tok-file-len
`,
	}
	dir := bbAnsibleContext(t, `  - name: play
    secrets: [{id: tok, src: tok.txt}]
    ansible: {playbook: site.yml}
`, files)
	os.WriteFile(filepath.Join(dir, "tok.txt"), []byte(secret+"\n"), 0o600)
	out := t.TempDir()
	var log bytes.Buffer
	cache := t.TempDir()
	o := layerimg.Options{CacheDir: cache, Output: &log, RootfsTar: filepath.Join(out, "rootfs.tar"), Manifest: filepath.Join(out, "m.json")}
	build(t, load(t, dir, nil), o)
	if strings.Contains(log.String(), secret) {
		t.Errorf("the secret reached the log:\n%s", log.String())
	}
	if !strings.Contains(log.String(), "token is ***") {
		t.Errorf("the debug task's line is not in the log, redacted:\n%s", log.String())
	}
	data, _ := os.ReadFile(o.RootfsTar)
	entries := strings.Join(tartest.Summary(t, io.NopCloser(bytes.NewReader(data))), "\n")
	if !strings.Contains(entries, "tok-len f 0644 24\n") || !strings.Contains(entries, "tok-file-len f 0644 24\n") {
		t.Errorf("the play did not see the secret:\n%s", entries)
	}
	for _, root := range []string{cache, out} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte(secret)) || bytes.Contains(gunzipOr(b), []byte(secret)) {
				t.Errorf("the secret is in %s", p)
			}
			return nil
		})
	}
}

func gunzipOr(b []byte) []byte {
	if out, err := gunzip(b); err == nil {
		return out
	}
	return nil
}

func TestAnsibleNoPython(t *testing.T) {
	needRoot(t)
	needAnsible(t)
	dir := bbAnsibleContext(t, `  - name: play
    ansible: {playbook: site.yml}
`, map[string]string{"site.yml": "- hosts: all\n  gather_facts: false\n  tasks:\n    - copy: {content: x, dest: /x}\n"})
	_, err := layerimg.Build(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no Python 3") {
		t.Fatalf("want an error naming the missing Python, got %v", err)
	}
}

// A run step can opt into the same check: it runs twice, and the paths the
// second run changed fail it. Rewriting a file with the same bytes is no
// change.
func TestRunStepCheckIdempotent(t *testing.T) {
	needRoot(t)
	dir := busyboxContext(t, fixture(t, "bb-header.yaml")+`  - name: same
    run: echo same > /same && mkdir -p /d && echo x > /d/f
    check_idempotent: true
  - name: grows
    run: echo again >> /log && echo same > /same
    check_idempotent: true
`, nil)
	o := layerimg.Options{CacheDir: t.TempDir()}
	_, err := layerimg.Build(context.Background(), load(t, dir, nil), o)
	var ne *layers.NotIdempotentError
	if !errors.As(err, &ne) || strings.Join(ne.Paths, " ") != "/log" || !strings.Contains(err.Error(), "step 3 (grows)") {
		t.Fatalf("want step 3 to fail listing /log only, got %v", err)
	}
	plan, err := layerimg.Plan(context.Background(), load(t, dir, nil), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(plan); got != "busybox=HIT same=HIT grows=MISS" || !plan[1].CheckIdempotent {
		t.Errorf("plan: %s %+v", got, plan[1])
	}
}

// TestAnsibleDebian builds recipes/examples/debian-ansible.yaml for real: a
// bootstrapped Debian with Python, and a role that installs a package,
// templates a file with a value from --arg, adds a user and sets a sysctl,
// with the idempotency check on. Then a play whose command task has no
// creates: fails the check, naming the task. About two minutes, most of it
// the bootstrap.
func TestAnsibleDebian(t *testing.T) {
	needRoot(t)
	needAnsible(t)
	if testing.Short() {
		t.Skip("-short: skipping the real Debian bootstrap")
	}
	ctx := context.Background()
	r, err := recipes.Load("../recipes/examples/debian-ansible.yaml", map[string]string{"MOTD": "motd from --arg"})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cache := t.TempDir()
	o := layerimg.Options{CacheDir: cache, RootfsTar: filepath.Join(out, "rootfs.tar"), Manifest: filepath.Join(out, "build.json")}
	res, err := layerimg.Build(ctx, r, o)
	if err != nil {
		t.Fatal(err)
	}
	st := res.Steps[0].Ansible // the bootstrap is not a step
	if st == nil || st.Changed != 6 || st.Failed != 0 || !st.IdempotentChecked {
		t.Errorf("recap: %+v", st)
	}
	data, err := os.ReadFile(o.RootfsTar)
	if err != nil {
		t.Fatal(err)
	}
	entries := strings.Join(tartest.Summary(t, io.NopCloser(bytes.NewReader(data))), "\n")
	for _, want := range []string{"usr/bin/less f", "etc/motd f 0644 motd from --arg\n", "etc/sysctl.d/60-layerimg.conf f 0644 net.ipv4.ip_forward = 1\n", "home/deploy d"} {
		if !strings.Contains(entries, want) {
			t.Errorf("rootfs lacks %q", want)
		}
	}
	if !strings.Contains(entries, "deploy:x:1500:") {
		t.Errorf("no deploy user in /etc/passwd")
	}
	for _, bad := range []string{"var/lib/apt/lists/deb.debian.org", "layerimg-ansible"} {
		if strings.Contains(entries, bad) {
			t.Errorf("rootfs holds %s", bad)
		}
	}

	// Nothing changed: nothing runs.
	o.RootfsTar, o.Manifest = "", ""
	res2, err := layerimg.Build(ctx, r, o)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Executed != 0 || res2.Image != res.Image {
		t.Errorf("rebuild executed %d, image %s vs %s", res2.Executed, res2.Image, res.Image)
	}

	// A command task without creates: changes something at every run.
	dir := t.TempDir()
	recipe := strings.Replace(mustRead(t, "../recipes/examples/debian-ansible.yaml"), "playbook: ansible/site.yml", "playbook: bad.yml", 1)
	os.WriteFile(filepath.Join(dir, "recipe.yaml"), []byte(recipe), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.yml"), []byte(`- hosts: all
  gather_facts: false
  tasks:
    - name: stamp the build
      ansible.builtin.command: touch /etc/stamp
`), 0o644)
	r3, err := recipes.Load(filepath.Join(dir, "recipe.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = layerimg.Build(ctx, r3, o)
	var ne *layers.NotIdempotentError
	if !errors.As(err, &ne) || strings.Join(ne.Tasks, ",") != "stamp the build" {
		t.Fatalf("want the check to name the command task, got %v", err)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// A requirements file installs a collection offline from a tarball in the
// build context; the tarball is part of the step's key.
func TestAnsibleRequirementsOffline(t *testing.T) {
	needRoot(t)
	needAnsible(t)
	dir := bbAnsibleContext(t, `  - name: play
    ansible:
      playbook: site.yml
      requirements: requirements.yml
`, map[string]string{
		"site.yml":                       "- hosts: all\n  gather_facts: false\n  roles: [acme.tools.hello, local]\n",
		"requirements.yml":               "collections:\n  - name: dist/acme-tools-1.0.0.tar.gz\n    type: file\nroles:\n  - src: ./dist/local.tar.gz\n    name: local\n",
		"role/local/tasks/main.yml":      "- name: from the role\n  raw: echo role > /from-role\n",
		"role/local/meta/main.yml":       "galaxy_info: {author: layerimg, description: test, license: MIT, min_ansible_version: '2.14', platforms: []}\ndependencies: []\n",
		"col/galaxy.yml":                 "namespace: acme\nname: tools\nversion: 1.0.0\nreadme: README.md\nauthors: [layerimg]\n",
		"col/README.md":                  "test collection\n",
		"col/roles/hello/tasks/main.yml": "- name: from the collection\n  raw: echo collection > /from-collection\n",
	})
	galaxyBuild := func() {
		t.Helper()
		cmd := exec.Command("ansible-galaxy", "collection", "build", "--force", "--output-path", filepath.Join(dir, "dist"), filepath.Join(dir, "col"))
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ansible-galaxy collection build: %v\n%s", err, out)
		}
	}
	galaxyBuild()
	if b, err := exec.Command("tar", "-czf", filepath.Join(dir, "dist/local.tar.gz"), "-C", filepath.Join(dir, "role"), "local").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, b)
	}
	out := t.TempDir()
	o := layerimg.Options{CacheDir: t.TempDir(), RootfsTar: filepath.Join(out, "rootfs.tar")}
	build(t, load(t, dir, nil), o)
	data, _ := os.ReadFile(o.RootfsTar)
	entries := strings.Join(tartest.Summary(t, io.NopCloser(bytes.NewReader(data))), "\n")
	if !strings.Contains(entries, "from-collection f 0644 collection\n") {
		t.Errorf("the collection's role did not run:\n%s", entries)
	}
	if !strings.Contains(entries, "from-role f 0644 role\n") {
		t.Errorf("the requirements' role did not run:\n%s", entries)
	}
	// A new tarball misses the step, naming it.
	os.WriteFile(filepath.Join(dir, "col/roles/hello/tasks/main.yml"), []byte("- name: from the collection\n  raw: echo v2 > /from-collection\n"), 0o644)
	galaxyBuild()
	plan, err := layerimg.Plan(context.Background(), load(t, dir, nil), o)
	if err != nil {
		t.Fatal(err)
	}
	if plan[1].Status != layerimg.Miss || !strings.Contains(plan[1].Why, "dist/acme-tools-1.0.0.tar.gz") {
		t.Errorf("plan after a new tarball: %s: %s", plan[1].Status, plan[1].Why)
	}
}

// A role from the network in the requirements is refused before anything
// runs: requirements are installed offline.
func TestAnsibleRequirementsRefuseNetworkRoles(t *testing.T) {
	dir := bbAnsibleContext(t, `  - name: play
    ansible:
      playbook: site.yml
      requirements: requirements.yml
`, map[string]string{
		"site.yml":         "- hosts: all\n  gather_facts: false\n  roles: [geerlingguy.docker]\n",
		"requirements.yml": "roles:\n  - name: geerlingguy.docker\n",
	})
	_, err := layerimg.Plan(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), `role "geerlingguy.docker"`) || !strings.Contains(err.Error(), "offline") {
		t.Errorf("got %v", err)
	}
}
