package layerimg

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/layerimg/layerimg/internal/progress"
)

type recordSink struct {
	mu sync.Mutex
	ev []progress.Event
}

func (r *recordSink) Emit(e progress.Event) {
	r.mu.Lock()
	r.ev = append(r.ev, e)
	r.mu.Unlock()
}

// A conversion reports the bytes its writer has put in the temporary file
// beside the output, then the final size.
func TestWatchSizeReportsGrowth(t *testing.T) {
	sink := &recordSink{}
	ctx := progress.WithSink(context.Background(), sink)
	dir := t.TempDir()
	dst := filepath.Join(dir, "disk.vmdk")
	tmp := filepath.Join(dir, ".disk.vmdk.tmp-1")
	stop := watchSize(ctx, "converting to vmdk", dst)
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		f.Write(make([]byte, 1<<20))
		time.Sleep(150 * time.Millisecond)
	}
	f.Close()
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
	stop()
	var last progress.Event
	grew := 0
	for _, e := range sink.ev {
		if e.Type != progress.Transfer {
			continue
		}
		if e.Done > last.Done {
			grew++
		}
		last = e
	}
	if !last.Final || last.Done != 3<<20 || grew < 1 {
		t.Errorf("last event %+v after %d increases; want a final 3 MiB after at least 1", last, grew)
	}
}
