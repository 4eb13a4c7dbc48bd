package runc

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// StartFifo starts a created container as `runc start` does — by opening its
// exec fifo, which releases the waiting init — without spawning runc. exited
// is closed when the container's process is gone (then the start fails).
// Without a known state root, or with another runtime than runc (crun's
// waiting init reads its fifo instead of writing it), it falls back to Start.
func (r *Runc) StartFifo(ctx context.Context, id string, exited <-chan struct{}) error {
	if r.Root == "" || !r.isRunc() {
		return r.Start(ctx, id)
	}
	fifo := filepath.Join(r.Root, id, "exec.fifo")
	if _, err := os.Stat(fifo); err != nil {
		return r.Start(ctx, id)
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		done <- result{b, err}
	}()
	unblock := func() {
		// Release the goroutine blocked in open(2) by being the writer ourselves.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	}
	select {
	case res := <-done:
		if res.err != nil {
			return fmt.Errorf("runc start %s: exec fifo: %w", id, res.err)
		}
		if len(res.b) == 0 {
			return fmt.Errorf("runc start %s: the container process exited before start", id)
		}
		_ = os.Remove(fifo)
		return nil
	case <-exited:
		unblock()
		return fmt.Errorf("runc start %s: the container process exited before start", id)
	case <-ctx.Done():
		unblock()
		return fmt.Errorf("runc start %s: %w", id, ctx.Err())
	}
}
