package provider

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

var validName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func TestVMName(t *testing.T) {
	tests := []struct {
		pod, sid, want string
	}{
		{"nginx", "0123456789abcdef", "podvm-nginx-01234567"},
		{"My_Pod.Name", "ABCDEF0123", "podvm-my-pod-name-abcdef01"},
		{"", "abc", "podvm-abc"},
		{strings.Repeat("a", 100), "deadbeefcafe", "podvm-" + strings.Repeat("a", 48) + "-deadbeef"},
		{"x--y--", "12345678", "podvm-x-y-12345678"},
	}
	for _, tc := range tests {
		got, err := VMName(tc.pod, tc.sid)
		if err != nil {
			t.Fatalf("VMName(%q, %q): %v", tc.pod, tc.sid, err)
		}
		if got != tc.want {
			t.Errorf("VMName(%q, %q) = %q, want %q", tc.pod, tc.sid, got, tc.want)
		}
		if !validName.MatchString(got) || strings.HasSuffix(got, "-") {
			t.Errorf("VMName(%q, %q) = %q is not a valid name", tc.pod, tc.sid, got)
		}
	}
	if _, err := VMName("pod", "---"); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("sandbox id without usable characters: err = %v", err)
	}
}

func FuzzVMName(f *testing.F) {
	f.Add("nginx-7d9f", "0123456789abcdef")
	f.Add("ÄÖÜ-😀-pod", "--x--")
	f.Fuzz(func(t *testing.T, pod, sid string) {
		got, err := VMName(pod, sid)
		if err != nil {
			return
		}
		if len(got) > MaxNameLen || !validName.MatchString(got) || strings.HasSuffix(got, "-") {
			t.Fatalf("VMName(%q, %q) = %q is not a valid name", pod, sid, got)
		}
	})
}

func TestTags(t *testing.T) {
	tags := Tags(Owner{ClusterID: "c1", Node: "n1", SandboxID: "s1", PodNamespace: "ns", PodName: "p", PodUID: "u"},
		map[string]string{"team": "a", TagManaged: "false"})
	want := map[string]string{TagManaged: "true", TagCluster: "c1", TagNode: "n1", TagSandbox: "s1",
		TagPodNamespace: "ns", TagPodName: "p", TagPodUID: "u", "team": "a"}
	if FormatTags(tags) != FormatTags(want) {
		t.Fatalf("Tags = %s, want %s", FormatTags(tags), FormatTags(want))
	}
	if !Matches(tags, NodeSelector("c1", "n1")) || Matches(tags, NodeSelector("c1", "n2")) {
		t.Fatal("NodeSelector match wrong")
	}
}

func TestParseTags(t *testing.T) {
	got, err := ParseTags(" a=1, b = two ,c=")
	if err != nil {
		t.Fatal(err)
	}
	if FormatTags(got) != "a=1,b=two,c=" {
		t.Fatalf("got %s", FormatTags(got))
	}
	for _, bad := range []string{"a", "=1", "a=1,a=2", "a=1,,b=2"} {
		if _, err := ParseTags(bad); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "TAGS") {
			t.Errorf("ParseTags(%q) err = %v, want invalid config naming TAGS", bad, err)
		}
	}
}

func TestErrorClasses(t *testing.T) {
	cause := errors.New("boom")
	err := fmt.Errorf("create VM x: %w", &Error{Class: ErrThrottled, RetryAfter: 3 * time.Second, Err: cause})
	if !errors.Is(err, ErrThrottled) || !errors.Is(err, cause) || errors.Is(err, ErrCapacity) {
		t.Fatal("classification lost through wrapping")
	}
	if d, ok := RetryAfter(err); !ok || d != 3*time.Second {
		t.Fatalf("RetryAfter = %v, %v", d, ok)
	}
	if ClassOf(err) != ErrThrottled || !Retryable(err) {
		t.Fatal("ClassOf/Retryable wrong for throttled")
	}
	if Retryable(Classify(ErrCapacity, cause)) || ClassOf(cause) != nil || Classify(ErrNotFound, nil) != nil {
		t.Fatal("capacity must not be retryable; unclassified must have no class; nil stays nil")
	}
}
