package tunnel

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"strings"
	"testing"
)

// The example in SPEC.md, byte for byte.
func TestHeaderSpecExample(t *testing.T) {
	want, _ := hex.DecodeString("70010017" + "07636f6e736f6c65" + "01" + "09636f6e7461696e6572" + "0002" + "6331")
	got, err := encodeHeader(Header{Kind: KindConsole, Meta: map[string]string{"container": "c1"}}, DefaultMaxHeaderSize)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded\n%x\nwant\n%x", got, want)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	tests := []Header{
		{Kind: KindAgent},
		{Kind: "a"},
		{Kind: Kind(strings.Repeat("z", maxKindLen))},
		{Kind: KindNet, Meta: map[string]string{"iface": "eth0", "mtu": "1450", "ünïcode": "välue", "empty": ""}},
	}
	for _, h := range tests {
		b, err := encodeHeader(h, maxMaxHeaderSize)
		if err != nil {
			t.Fatalf("encode %+v: %v", h, err)
		}
		r := bytes.NewReader(append(b, "payload"...))
		got, err := readHeader(r, maxMaxHeaderSize)
		if err != nil {
			t.Fatalf("read %+v: %v", h, err)
		}
		if got.Kind != h.Kind || !maps.Equal(got.Meta, h.Meta) {
			t.Fatalf("round trip %+v → %+v", h, got)
		}
		rest, _ := io.ReadAll(r)
		if string(rest) != "payload" {
			t.Fatalf("readHeader consumed payload bytes; %q left", rest)
		}
	}
}

func TestEncodeHeaderRefuses(t *testing.T) {
	tests := []struct {
		name string
		h    Header
		max  int
		want string
	}{
		{"empty kind", Header{}, 4096, "kind"},
		{"upper case kind", Header{Kind: "Agent"}, 4096, "kind"},
		{"kind with space", Header{Kind: "a b"}, 4096, "kind"},
		{"leading dash", Header{Kind: "-x"}, 4096, "kind"},
		{"long kind", Header{Kind: Kind(strings.Repeat("a", 64))}, 4096, "kind"},
		{"empty key", Header{Kind: "a", Meta: map[string]string{"": "v"}}, 4096, "metadata key"},
		{"long key", Header{Kind: "a", Meta: map[string]string{strings.Repeat("k", 256): "v"}}, 4096, "metadata key"},
		{"bad utf8 value", Header{Kind: "a", Meta: map[string]string{"k": "\xff"}}, 4096, "UTF-8"},
		{"too large", Header{Kind: "a", Meta: map[string]string{"k": strings.Repeat("v", 200)}}, 128, "more than the 128 allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := encodeHeader(tt.h, tt.max)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("encodeHeader = %v, want error with %q", err, tt.want)
			}
		})
	}
}

func TestReadHeaderRefuses(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		code byte
	}{
		{"bad magic", "47455420", statusMalformed}, // "GET "
		{"bad version", "70020002" + "0161", statusMalformed},
		{"oversized", "7001ffff", statusTooLarge},
		{"kind length past end", "70010002" + "05" + "61", statusMalformed},
		{"no metadata count", "70010002" + "0161", statusMalformed},
		{"bad kind byte", "70010003" + "014100", statusMalformed},
		{"empty kind", "70010002" + "0000", statusMalformed},
		{"empty key", "70010006" + "0161" + "01" + "00" + "0000", statusMalformed},
		{"value past end", "70010007" + "0161" + "01" + "016b" + "0005", statusMalformed},
		{"repeated key", "7001000b" + "0161" + "02" + "016b0000" + "016b0000", statusMalformed},
		{"trailing bytes", "70010004" + "0161" + "00" + "ff", statusMalformed},
		{"bad utf8 value", "70010008" + "0161" + "01" + "016b" + "0001ff", statusMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			_, err = readHeader(bytes.NewReader(b), DefaultMaxHeaderSize)
			var he *headerError
			if !errors.As(err, &he) || he.code != tt.code {
				t.Fatalf("readHeader = %v, want status %d", err, tt.code)
			}
		})
	}
}

func FuzzReadHeader(f *testing.F) {
	seed, _ := encodeHeader(Header{Kind: KindAgent, Meta: map[string]string{"k": "v"}}, DefaultMaxHeaderSize)
	f.Add(seed)
	f.Add([]byte("7001ffff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readHeader(bytes.NewReader(b), DefaultMaxHeaderSize)
		if err != nil {
			return
		}
		// Whatever parses must encode again and parse to the same header.
		enc, err := encodeHeader(h, DefaultMaxHeaderSize)
		if err != nil {
			t.Fatalf("parsed %+v but cannot encode it: %v", h, err)
		}
		h2, err := readHeader(bytes.NewReader(enc), DefaultMaxHeaderSize)
		if err != nil || h2.Kind != h.Kind || !maps.Equal(h2.Meta, h.Meta) {
			t.Fatalf("re-encoded %+v parses as %+v, %v", h, h2, err)
		}
	})
}
