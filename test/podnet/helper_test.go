package podnet_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a helper process: "serve ADDR"
// (an HTTP server of deterministic data) or "get URL [BYTES/S]" (prints the
// SHA-256 and length of what it read). The helpers run in the namespaces
// the tests make: the pod's side in the VM, the client's in the cluster.
const helperEnv = "PODNET_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helper(os.Args[1:]))
	}
	code := m.Run()
	if agentBin != "" {
		os.RemoveAll(filepath.Dir(agentBin))
	}
	os.Exit(code)
}

// blob writes n deterministic bytes.
func blob(w io.Writer, n int64) error {
	r := rand.NewChaCha8([32]byte{'p', 'o', 'd', 'n', 'e', 't'})
	_, err := io.CopyN(w, r, n)
	return err
}

func blobHash(n int64) string {
	h := sha256.New()
	_ = blob(h, n)
	return hex.EncodeToString(h.Sum(nil))
}

func helper(args []string) int {
	switch {
	case len(args) == 2 && args[0] == "serve":
		ln, err := net.Listen("tcp", args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		host, _ := os.Hostname()
		mux := http.NewServeMux()
		mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s to %s\n", host, r.RemoteAddr)
		})
		mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) {
			n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
			if err != nil || n < 0 {
				http.Error(w, "bad n", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			_ = blob(w, n)
		})
		fmt.Println("listening")
		_ = http.Serve(ln, mux)
		return 1
	case len(args) == 2 && args[0] == "show":
		resp, err := (&http.Client{Timeout: time.Minute}).Get(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer resp.Body.Close()
		_, _ = io.Copy(os.Stdout, resp.Body)
		return 0
	case (len(args) == 2 || len(args) == 3) && args[0] == "get":
		var rate int64
		if len(args) == 3 {
			rate, _ = strconv.ParseInt(args[2], 10, 64)
		}
		c := &http.Client{Timeout: 5 * time.Minute}
		resp, err := c.Get(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer resp.Body.Close()
		h := sha256.New()
		var n int64
		start := time.Now()
		buf := make([]byte, 64<<10)
		for {
			k, err := resp.Body.Read(buf)
			h.Write(buf[:k])
			n += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "read:", err)
				return 1
			}
			if rate > 0 {
				if ahead := time.Duration(float64(n)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			}
		}
		fmt.Printf("%s %d\n", hex.EncodeToString(h.Sum(nil)), n)
		return 0
	}
	fmt.Fprintln(os.Stderr, "usage: serve ADDR | show URL | get URL [BYTES/S]")
	return 2
}
