package e2e_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/export/sign"
	"github.com/layerimg/layerimg/internal/cosigntest"
	"github.com/layerimg/layerimg/internal/progress"
	"github.com/layerimg/layerimg/recipes"
)

// signCLI builds the layerimg binary for the signing tests.
func signCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "layerimg")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/layerimg").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runLayerimg runs the binary with env added; it returns stdout, stderr
// and the exit status.
func runLayerimg(t *testing.T, bin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// TestSignedBuild builds the busybox story recipe with --provenance and
// --sign-key, pushing the image, the containerDisk and the disk artifact
// to Debian's docker-registry, and checks every signature and attestation
// with the real cosign and with layerimg verify; then flips bytes and
// swaps keys to see both refuse.
func TestSignedBuild(t *testing.T) {
	needRoot(t)
	c := cosigntest.New(t)
	wrong := cosigntest.New(t) // another key pair
	reg := startRegistry(t, "", "")
	bin := signCLI(t)
	dir := busyboxContext(t, fixture(t, "story.yaml"), map[string]string{"conf/motd": "hello\n"})
	out := t.TempDir()
	prov, manifest := filepath.Join(out, "provenance.json"), filepath.Join(out, "build.json")
	image, cdisk, art := reg+"/golden:1.0", reg+"/golden-disk:1.0", reg+"/golden-files:1.0"
	env := []string{"COSIGN_PASSWORD=" + c.Password}
	args := []string{"build", filepath.Join(dir, "recipe.yaml"), "--cache-dir", t.TempDir(),
		"--insecure-registry", reg, "-o", out, "--push", image, "--push-disk", cdisk, "--disk-artifact", art,
		"--provenance", prov, "--sign-key", c.Key(), "--manifest", manifest, "--progress", "json"}
	// The SBOM's file and attestations are checked as the provenance's are.
	sbom := filepath.Join(out, "sbom.spdx.json")
	args = append(args, "--sbom", sbom)
	_, stderr, code := runLayerimg(t, bin, env, args...)
	if code != 0 {
		t.Fatalf("build exit %d:\n%s", code, stderr)
	}
	mdata, _ := os.ReadFile(manifest)
	if strings.Contains(stderr, c.Password) || strings.Contains(string(mdata), c.Password) {
		t.Error("the key's password reached the log or the manifest")
	}
	var res struct {
		Image string `json:"image_digest"`
		Steps []struct {
			Name, Key, Layer string
		} `json:"steps"`
		Disk struct {
			Files map[string]struct{ Path, SHA256 string }
		} `json:"disk"`
		Published          map[string]struct{ Digest string } `json:"published"`
		DiskArtifactDigest string                             `json:"disk_artifact_digest"`
		Attested           struct {
			Provenance struct{ Path, SHA256 string }
			Signed     []struct{ Ref, File, Kind string }
		} `json:"attested"`
	}
	if err := json.Unmarshal(mdata, &res); err != nil {
		t.Fatal(err)
	}
	t.Logf("attest stage: %s", stageTime(t, stderr, "attest"))

	// The provenance says what was built from what.
	pdata, err := os.ReadFile(prov)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(pdata); hex.EncodeToString(sum[:]) != res.Attested.Provenance.SHA256 {
		t.Error("the manifest's provenance sha256 is not the file's")
	}
	checkProvenance(t, pdata, filepath.Join(dir, "recipe.yaml"), res.Image, res.Published["containerdisk"].Digest, res.DiskArtifactDigest,
		res.Disk.Files, res.Steps)

	cosignOK := func(args ...string) {
		t.Helper()
		if o, err := c.Run(args...); err != nil {
			t.Errorf("cosign %s: %v\n%s", strings.Join(args, " "), err, o)
		}
	}
	cosignFails := func(args ...string) {
		t.Helper()
		if o, err := c.Run(args...); err == nil {
			t.Errorf("cosign %s verified:\n%s", strings.Join(args, " "), o)
		}
	}
	verify := func(target, pub string) (string, int) {
		o, e, code := runLayerimg(t, bin, nil, "verify", target, "--key", pub, "--insecure-registry", reg)
		return o + e, code
	}
	flags := []string{"--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry"}
	digests := map[string]string{image: res.Image, cdisk: res.Published["containerdisk"].Digest, art: res.DiskArtifactDigest}
	for ref, d := range digests {
		if d == "" {
			t.Fatalf("no digest recorded for %s", ref)
		}
		byDigest := strings.Split(ref, ":1.0")[0] + "@" + d
		cosignOK(append(append([]string{"verify", "--key", c.Pub()}, flags...), byDigest)...)
		cosignOK(append(append([]string{"verify-attestation", "--key", c.Pub(), "--type", "slsaprovenance1"}, flags...), byDigest)...)
		cosignOK(append(append([]string{"verify-attestation", "--key", c.Pub(), "--type", "spdxjson"}, flags...), byDigest)...)
		if o, _ := verify(ref, c.Pub()); !strings.Contains(o, "attestation verified: https://spdx.dev/Document") {
			t.Errorf("layerimg verify %s lists no SBOM attestation:\n%s", ref, o)
		}
		// The SBOM is also attached, unsigned, where cosign looks for it.
		if o, err := c.Run("download", "sbom", "--allow-http-registry", "--allow-insecure-registry", byDigest); err != nil {
			t.Errorf("cosign download sbom %s: %v\n%s", byDigest, err, o)
		} else if doc, _ := os.ReadFile(sbom); len(doc) == 0 || !strings.Contains(o, string(bytes.TrimSpace(doc))) {
			t.Errorf("cosign download sbom %s does not give the SBOM written:\n%.300s", byDigest, o)
		}
		cosignFails(append(append([]string{"verify", "--key", wrong.Pub()}, flags...), byDigest)...)
		o, code := verify(ref, c.Pub())
		if code != 0 || !strings.Contains(o, "attestation verified: https://slsa.dev/provenance/v1") {
			t.Errorf("layerimg verify %s: exit %d\n%s", ref, code, o)
		}
		if o, code := verify(ref, wrong.Pub()); code != 1 || !strings.Contains(o, "does not verify") {
			t.Errorf("layerimg verify %s with the wrong key: exit %d\n%s", ref, code, o)
		}
	}

	// Every local file has a bundle that cosign verify-blob accepts.
	files := []string{prov, sbom}
	for _, f := range res.Disk.Files {
		files = append(files, f.Path)
	}
	for _, f := range files {
		cosignOK("verify-blob", "--key", c.Pub(), "--bundle", f+".bundle", "--insecure-ignore-tlog=true", f)
		if o, code := verify(f, c.Pub()); code != 0 {
			t.Errorf("layerimg verify %s: exit %d\n%s", f, code, o)
		}
	}
	// One flipped byte in the raw disk's data and in the provenance: both
	// cosign and layerimg refuse.
	flip := func(path string, at int64) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := []byte{0}
		f.ReadAt(b, at)
		b[0] ^= 1
		f.WriteAt(b, at)
	}
	raw := res.Disk.Files["raw"].Path
	fi, _ := os.Stat(raw)
	flip(raw, fi.Size()/2)
	flip(prov, int64(len(pdata)/2))
	fi, _ = os.Stat(sbom)
	flip(sbom, fi.Size()/2)
	tampered := []string{raw, prov, sbom}
	for _, f := range tampered {
		cosignFails("verify-blob", "--key", c.Pub(), "--bundle", f+".bundle", "--insecure-ignore-tlog=true", f)
		if o, code := verify(f, c.Pub()); code != 1 || !strings.Contains(o, "changed since it was signed") {
			t.Errorf("layerimg verify tampered %s: exit %d\n%s", f, code, o)
		}
	}

	// Cross-check: what cosign signs, layerimg verifies. An unsigned build
	// (another arg: another digest) fails until cosign signs it.
	unsigned := reg + "/golden:unsigned"
	if _, e, code := runLayerimg(t, bin, nil, "build", filepath.Join(dir, "recipe.yaml"), "--cache-dir", t.TempDir(),
		"--insecure-registry", reg, "--push", unsigned, "--arg", "LAST=two"); code != 0 {
		t.Fatalf("unsigned build: exit %d\n%s", code, e)
	}
	if o, code := verify(unsigned, c.Pub()); code != 1 || !strings.Contains(o, "no signature") {
		t.Errorf("layerimg verify of an unsigned image: exit %d\n%s", code, o)
	}
	cosignOK("sign", "--key", c.Key(), "--tlog-upload=false", "--yes", "--allow-http-registry", "--allow-insecure-registry", unsigned)
	if o, code := verify(unsigned, c.Pub()); code != 0 {
		t.Errorf("layerimg verify of cosign's signature: exit %d\n%s", code, o)
	}
	blob := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(blob, []byte("signed by cosign\n"), 0o644)
	cosignOK("sign-blob", "--key", c.Key(), "--tlog-upload=false", "--yes", "--bundle", blob+".bundle", blob)
	if o, code := verify(blob, c.Pub()); code != 0 {
		t.Errorf("layerimg verify of cosign's blob bundle: exit %d\n%s", code, o)
	}
}

// checkProvenance checks the statement against what the build recorded.
func checkProvenance(t *testing.T, data []byte, recipe, image, cdisk, art string, disks map[string]struct{ Path, SHA256 string },
	steps []struct{ Name, Key, Layer string }) {
	t.Helper()
	var st struct {
		Type          string `json:"_type"`
		PredicateType string
		Subject       []struct {
			Name   string
			Digest map[string]string
		}
		Predicate struct {
			BuildDefinition struct {
				BuildType          string
				ExternalParameters struct {
					Recipe struct {
						URI    string
						Digest map[string]string
					}
					Args     map[string]string
					Platform string
				}
				ResolvedDependencies []struct {
					Name        string
					Digest      map[string]string
					Annotations map[string]any
				}
			}
			RunDetails struct {
				Builder  struct{ ID string }
				Metadata struct{ StartedOn, FinishedOn time.Time }
			}
		}
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != "https://in-toto.io/Statement/v1" || st.PredicateType != "https://slsa.dev/provenance/v1" {
		t.Errorf("types %q %q", st.Type, st.PredicateType)
	}
	subjects := map[string]bool{}
	for _, s := range st.Subject {
		subjects["sha256:"+s.Digest["sha256"]] = true
	}
	for what, d := range map[string]string{"image": image, "containerDisk": cdisk, "disk artifact": art} {
		if !subjects[d] {
			t.Errorf("the %s %s is not a subject", what, d)
		}
	}
	for f, df := range disks {
		data, _ := os.ReadFile(df.Path)
		sum := sha256.Sum256(data)
		if !subjects["sha256:"+hex.EncodeToString(sum[:])] {
			t.Errorf("disk %s (sha256 %x) is not a subject", f, sum)
		}
	}
	rdata, _ := os.ReadFile(recipe)
	rsum := sha256.Sum256(rdata)
	ext := st.Predicate.BuildDefinition.ExternalParameters
	if ext.Recipe.Digest["sha256"] != hex.EncodeToString(rsum[:]) || ext.Args["LAST"] != "one" || ext.Platform != "linux/amd64" {
		t.Errorf("externalParameters %+v", ext)
	}
	deps := map[string]bool{}
	for _, d := range st.Predicate.BuildDefinition.ResolvedDependencies {
		if k, _ := d.Annotations["cacheKey"].(string); k != "" {
			deps[k+" "+d.Digest["sha256"]] = true
		}
	}
	for _, s := range steps {
		if s.Key != "" && !deps[s.Key+" "+strings.TrimPrefix(s.Layer, "sha256:")] {
			t.Errorf("step %s (key %s, layer %s) is not among the resolved dependencies", s.Name, s.Key, s.Layer)
		}
	}
	md := st.Predicate.RunDetails.Metadata
	if st.Predicate.RunDetails.Builder.ID == "" || md.StartedOn.IsZero() || md.FinishedOn.Before(md.StartedOn) {
		t.Errorf("runDetails %+v", st.Predicate.RunDetails)
	}
}

// stageTime is a stage's elapsed time from --progress json lines.
func stageTime(t *testing.T, lines, stage string) time.Duration {
	sc := bufio.NewScanner(strings.NewReader(lines))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			Event, Stage string
			Elapsed      int64 `json:"elapsed_ns"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Event == "stage_finished" && e.Stage == stage {
			return time.Duration(e.Elapsed)
		}
	}
	t.Errorf("no %s stage in the progress", stage)
	return 0
}

// stageSink records how long each stage took.
type stageSink struct {
	mu     sync.Mutex
	stages map[string]time.Duration
}

func (s *stageSink) Emit(e progress.Event) {
	if e.Type == progress.StageFinished {
		s.mu.Lock()
		s.stages[e.Step] = e.Elapsed
		s.mu.Unlock()
	}
}

// TestSignedDebianCloud signs the shared debian-cloud build (rebuilt from
// its cache: every step and the disks HIT) with provenance, pushing the
// image to Debian's docker-registry: cosign verifies the real disks'
// bundles and the image's signature and attestations, and the attest
// stage's time is the overhead BENCHMARKS.md quotes.
func TestSignedDebianCloud(t *testing.T) {
	fx := debianCloud(t)
	c := cosigntest.New(t)
	reg := startRegistry(t, "", "")
	r, err := recipes.Load("../recipes/examples/debian-cloud.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Tests = nil // the fixture ran them; tests are in no key, so all still HITs
	s, err := sign.LoadKey(c.Key(), []byte(c.Password))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	sink := &stageSink{stages: map[string]time.Duration{}}
	// The fixture's cache, everything else here: its files stay as they are.
	o := layerimg.Options{CacheDir: fx.Opts.CacheDir, DiskDir: out, Manifest: filepath.Join(out, "build.json"), DiskDigests: true, SBOM: filepath.Join(out, "sbom.spdx.json"),
		Output: io.Discard, Progress: sink, Provenance: filepath.Join(out, "provenance.json"), Signer: s,
		Push: reg + "/debian-cloud:1", InsecureRegistries: []string{reg}}
	began := time.Now()
	res := build(t, r, o)
	t.Logf("signed rebuild of debian-cloud: %s total; stages %v; load %s", time.Since(began), sink.stages, loadAvg())
	if res.Executed != 0 {
		t.Errorf("%d steps ran: the rebuild was to reuse the fixture's cache", res.Executed)
	}
	ref := reg + "/debian-cloud@" + res.Image
	flags := []string{"--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry"}
	for _, args := range [][]string{
		append(append([]string{"verify", "--key", c.Pub()}, flags...), ref),
		append(append([]string{"verify-attestation", "--key", c.Pub(), "--type", "slsaprovenance1"}, flags...), ref),
		{"verify-blob", "--key", c.Pub(), "--bundle", res.Disk.Files["qcow2"].Path + ".bundle", "--insecure-ignore-tlog=true", res.Disk.Files["qcow2"].Path},
		{"verify-blob", "--key", c.Pub(), "--bundle", res.Disk.Files["raw"].Path + ".bundle", "--insecure-ignore-tlog=true", res.Disk.Files["raw"].Path},
	} {
		if o, err := c.Run(args...); err != nil {
			t.Errorf("cosign %s: %v\n%s", args[0], err, o)
		}
	}
	args := append(append([]string{"verify-attestation", "--key", c.Pub(), "--type", "spdxjson"}, flags...), ref)
	if o, err := c.Run(args...); err != nil {
		t.Errorf("cosign verify-attestation --type spdxjson: %v\n%s", err, o)
	}
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
