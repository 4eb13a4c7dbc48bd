package stdio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func readAll(t *testing.T, b *Buffer, max int) []byte {
	t.Helper()
	var out []byte
	for {
		p, err := b.Read(context.Background(), max)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p...)
	}
}

func TestBuffer(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		writes  []string
		max     int
		want    string
		dropped uint64
	}{
		{"fits", 16, []string{"hello ", "world"}, 4, "hello world", 0},
		{"wraps and drops oldest", 8, []string{"abcdef", "ghij"}, 3, "cdefghij", 2},
		{"one write larger than the buffer", 4, []string{"0123456789"}, 100, "6789", 6},
		{"empty", 4, nil, 1, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuffer(tt.size)
			for _, w := range tt.writes {
				b.write([]byte(w))
			}
			b.CloseWrite()
			if got := string(readAll(t, b, tt.max)); got != tt.want {
				t.Errorf("read %q, want %q", got, tt.want)
			}
			if b.Dropped() != tt.dropped {
				t.Errorf("dropped %d, want %d", b.Dropped(), tt.dropped)
			}
		})
	}
}

// A writer whose output no one reads must finish: the buffer drops, it never blocks.
func TestWriterNeverBlocksOnIdleReader(t *testing.T) {
	p, err := NewPipes(false, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 64 { // 4 MiB, far more than the pipe and buffer hold
			if _, err := p.Child.Stdout.Write(chunk); err != nil {
				t.Error(err)
				return
			}
		}
		p.Child.Stdout.Write([]byte("END"))
		p.CloseChild()
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("writer blocked by a reader that does not read")
	}
	out := readAll(t, p.Stdout, 1<<20)
	if !strings.HasSuffix(string(out), "END") || len(out) > 64<<10 {
		t.Fatalf("read %d bytes ending %q", len(out), out[max(0, len(out)-3):])
	}
	if p.Stdout.Dropped() == 0 {
		t.Fatal("nothing counted as dropped")
	}
}

func TestReadWaitsAndHonoursContext(t *testing.T) {
	b := NewBuffer(16)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := b.Read(ctx, 4); errc <- err }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	got := make(chan []byte, 1)
	go func() { p, _ := b.Read(context.Background(), 4); got <- p }()
	b.write([]byte("hi"))
	if p := <-got; string(p) != "hi" {
		t.Fatalf("read %q", p)
	}
}

func TestStdin(t *testing.T) {
	p, err := NewPipes(true, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if n, err := p.WriteStdin(context.Background(), []byte("abc")); n != 3 || err != nil {
		t.Fatalf("write = %d, %v", n, err)
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(p.Child.Stdin)
	if string(b) != "abc" {
		t.Fatalf("child read %q", b)
	}
	if _, err := p.WriteStdin(context.Background(), []byte("x")); !errors.Is(err, ErrStdinClosed) {
		t.Fatalf("write after close: %v", err)
	}
}
