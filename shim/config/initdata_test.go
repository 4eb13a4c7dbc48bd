package config

import (
	"testing"

	"github.com/peerpod/peerpod/api/initdata"
)

func TestDecodeInitdata(t *testing.T) {
	toml, err := initdata.Marshal("sha256", map[string]string{"aa.toml": "a = 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := initdata.EncodeAnnotation(toml)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeInitdata(enc); err != nil || got != string(toml) {
		t.Fatalf("decode = %q, %v", got, err)
	}
	if _, err := DecodeInitdata("H4sI-not-really"); err == nil {
		t.Fatal("garbage accepted")
	}
	if _, err := DecodeInitdata("version = \"0.1.0\"\nalgorithm = \"md5\"\n"); err == nil {
		t.Fatal("initdata with an unknown algorithm accepted")
	}
}
