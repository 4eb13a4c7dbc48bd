package irvm

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The dfa must answer as regexp's MatchString does, for every pattern it
// takes.

var dfaPatterns = []string{
	`^[a-z]+$`, `[a-z]+`, `a`, ``, `^`, `$`, `^$`, `$^`, `\A`, `\z`, `x*$`, `^x*`, `a|b|^c|d$`,
	`(?i)straße`, `(?i)^k$`, `[^a]`, `.`, `(?s).`, `^.+$`, `^(?s:.+)$`, `a.c`, `^(?:ab|a)*c$`,
	`^(?:(?:[A-Z0-9_]+?_PORT=[0-9]+|HOSTNAME=[a-z]+)\n)*$`, `é+`, `[\p{Greek}]+x`, `\x{FFFD}`,
	`^é+$`, `(a*)*b`, `a{2,3}$`, `^a{0}$`, `(?U)a+?b`, `[[:alpha:]]+\d`, `\pL`, `^\QA.B\E$`,
	// assertions a dfa does not take: regexp matches these
	`\bfoo\b`, `(?m)^a$`, `\B`,
}

var dfaTexts = []string{
	"", "a", "b", "abc", "ABC", "xyz", "x", "xx\n", "\n", "a\nb", "STRASSE", "straße", "Straße", "k", "K", "\u212a",
	"ac", "abac", "ababc", "aabc", "ab\nc", "é", "éé", "eé", "ê", "éê", "αβγx", "\xff", "\xffx", "a\xffc", "\xef\xbf\xbd",
	"aab", "aaab", "aaaa", "ab", "A.B", "AxB", "foo bar", "foobar",
	"KUBERNETES_PORT=443\nHOSTNAME=web\n", "KUBERNETES_PORT=443\nHOSTNAME=web", "HOSTNAME=Web\n", "A_B_PORT=1\n",
}

func TestDFAMatchesRegexp(t *testing.T) {
	for _, p := range dfaPatterns {
		re := regexp.MustCompile(p)
		c := &compiledRegex{pattern: p, re: re, dfa: newDFA(p, new(atomic.Int32))}
		if c.dfa == nil && !strings.Contains(p, `\b`) && !strings.Contains(p, `\B`) && !strings.Contains(p, "(?m)") {
			t.Errorf("%q: no dfa", p)
		}
		for _, s := range dfaTexts {
			// Twice: the second match runs on the states the first made.
			for range 2 {
				if got, want := c.match(s), re.MatchString(s); got != want {
					t.Errorf("%q matching %q: %v, regexp %v", p, s, got, want)
				}
			}
		}
	}
}

// TestDFAStateLimit: a dfa that would need more states than it keeps
// leaves the match to regexp, with the same answer.
func TestDFAStateLimit(t *testing.T) {
	const p = `a.{12}$` // about 2^12 states
	re := regexp.MustCompile(p)
	c := &compiledRegex{pattern: p, re: re, dfa: newDFA(p, new(atomic.Int32))}
	var b strings.Builder
	x := uint32(1)
	for range 20000 {
		x = x*1664525 + 1013904223
		b.WriteByte("ab"[x>>31])
	}
	text := b.String()
	if _, ok := c.dfa.match(text); ok {
		t.Fatalf("the dfa matched %d bytes of %q within %d states", len(text), p, maxDFAStates)
	}
	for _, s := range []string{text, text + "a123456789012", text[:100]} {
		if got, want := c.match(s), re.MatchString(s); got != want {
			t.Errorf("match of %d bytes: %v, regexp %v", len(s), got, want)
		}
	}
	if n := len(c.dfa.states); n > maxDFAStates {
		t.Errorf("%d states kept, at most %d", n, maxDFAStates)
	}
}

// TestDFAConcurrent: evaluations share a statement's dfa (go test -race).
func TestDFAConcurrent(t *testing.T) {
	const p = `^(?:[a-z]+[0-9]*\n)*$`
	re := regexp.MustCompile(p)
	d := newDFA(p, new(atomic.Int32))
	texts := []string{"abc\nx1\n", "abc\n1x\n", "zz99\n", "é\n", ""}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				s := texts[(g+i)%len(texts)]
				got, ok := d.match(s)
				if !ok || got != re.MatchString(s) {
					t.Errorf("%q: %v %v", s, got, ok)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzDFA(f *testing.F) {
	for _, p := range dfaPatterns {
		for _, s := range dfaTexts[:8] {
			f.Add(p, s)
		}
	}
	f.Fuzz(func(t *testing.T, p, s string) {
		re, err := regexp.Compile(p)
		if err != nil {
			return
		}
		d := newDFA(p, new(atomic.Int32))
		if d == nil {
			return
		}
		if got, ok := d.match(s); ok && got != re.MatchString(s) {
			t.Errorf("%q matching %q: %v, regexp %v", p, s, got, !got)
		}
	})
}

// BenchmarkRegexMatch compares the dfa with regexp's MatchString on a
// policy's pattern for the runtime's environment variables, one line
// each (policygen's env_lines_regex), on a pod's eight runtime lines.
func BenchmarkRegexMatch(b *testing.B) {
	const name = `[A-Z0-9_]+?_(?:SERVICE_HOST=[0-9a-fA-F.:]+|SERVICE_PORT(?:_[A-Z0-9_]+)?=[0-9]+|` +
		`PORT=(?:tcp|udp|sctp)://[0-9a-fA-F.:\[\]]+:[0-9]+|PORT_[0-9]+_(?:TCP|UDP|SCTP)(?:` +
		`=(?:tcp|udp|sctp)://[0-9a-fA-F.:\[\]]+:[0-9]+|_PROTO=(?:tcp|udp|sctp)|_PORT=[0-9]+|_ADDR=[0-9a-fA-F.:]+))`
	const pattern = "^(?:(?:HOSTNAME=[A-Za-z0-9.-]+|TERM=xterm|" + name + ")\n)*$"
	text := strings.Join([]string{"HOSTNAME=web", "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
		"KUBERNETES_PORT=tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO=tcp", "KUBERNETES_PORT_443_TCP_PORT=443", "KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1"}, "\n") + "\n"
	re := regexp.MustCompile(pattern)
	d := newDFA(pattern, new(atomic.Int32))
	b.Run("regexp", func(b *testing.B) {
		for b.Loop() {
			if !re.MatchString(text) {
				b.Fatal("no match")
			}
		}
	})
	b.Run("dfa", func(b *testing.B) {
		for b.Loop() {
			if m, ok := d.match(text); !m || !ok {
				b.Fatal("no match")
			}
		}
	})
}

// TestRegexCache: a regex.match statement in a loop over patterns compiles
// each pattern once for the program, not once per call.
func TestRegexCache(t *testing.T) {
	ctx := context.Background()
	p := compileX(t, "x := [m | some p in [\"^a\", \"^b\", \"l\", \"(\", \"^a\"]; m := regex.match(p, input.user)]")
	for _, user := range []string{"alice", "bob", "carol"} {
		rs, err := p.Eval(ctx, ast.MustParseTerm(fmt.Sprintf(`{"user": %q}`, user)).Value, nil)
		if err != nil || len(rs) != 1 {
			t.Fatalf("Eval: %v, %v", rs, err)
		}
		re := regexp.MustCompile
		want := ast.ArrayTerm(ast.InternedTerm(re("^a").MatchString(user)), ast.InternedTerm(re("^b").MatchString(user)),
			ast.InternedTerm(re("l").MatchString(user)), ast.InternedTerm(re("^a").MatchString(user)))
		if got := rs[0].(ast.Object).Get(ast.StringTerm("x")); !got.Equal(want) {
			t.Fatalf("%s: x = %v, want %v", user, got, want)
		}
	}
	if n := p.nregexes.Load(); n != 4 {
		t.Errorf("%d patterns compiled for the program, want 4", n)
	}
}

// TestDFAProgramBudget: the dfas of one program share a bound on their
// states; past it, matches go to regexp with the same answers.
func TestDFAProgramBudget(t *testing.T) {
	var budget atomic.Int32
	budget.Store(maxProgramDFAStates - 2)
	const p = `^[a-z]+[0-9]*$`
	re := regexp.MustCompile(p)
	c := &compiledRegex{pattern: p, re: re, dfa: newDFA(p, &budget)}
	for _, s := range []string{"abc123", "abc", "123", "ab1c", ""} {
		if got, want := c.match(s), re.MatchString(s); got != want {
			t.Errorf("%q: %v, regexp %v", s, got, want)
		}
	}
	if n := budget.Load(); n != maxProgramDFAStates {
		t.Errorf("budget at %d after the dfa ran out, want %d", n, maxProgramDFAStates)
	}
	// A digit first leads to a state the budget left no room for.
	if _, ok := c.dfa.match("1"); ok {
		t.Error("the dfa made a state past the program's budget")
	}
}
