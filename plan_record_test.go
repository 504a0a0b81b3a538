package layerimg

import (
	"testing"

	"github.com/layerimg/layerimg/layers"
)

// Each platform's last build has its own record: building arm64 after
// amd64 must not change what plan explains for amd64.
func TestRecordPerPlatform(t *testing.T) {
	c, err := layers.OpenCache(t.TempDir(), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if err := writeRecord(c, "web", p, map[string]layers.KeyInput{"s": {Kind: "run", Platform: p}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if got := readRecord(c, "web", p)["s"].Platform; got != p {
			t.Errorf("the %s record says %s", p, got)
		}
	}
	if readRecord(c, "web", "linux/riscv64") != nil {
		t.Error("a platform never built has a record")
	}
}
