package irvm

import (
	"regexp"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Built-ins on strings that irvm runs itself when their operands are
// strings: startswith, endswith, contains, regex.match (its pattern
// compiled once per statement, see regexOf) and is_null. The generic path
// (an operand slice, the built-in's interface conversions and iterator,
// and for regex.match OPA's global pattern cache behind its lock) is left
// for other operands, where the built-in reports the error.

// stringOperands returns a's and b's strings when both are strings; ok is
// false otherwise, and undefined when either is undefined.
func stringOperands(a, b *ast.Term) (x, y string, ok, undefined bool) {
	if a == nil || b == nil {
		return "", "", false, true
	}
	sa, ok := a.Value.(ast.String)
	if !ok {
		return "", "", false, false
	}
	sb, ok := b.Value.(ast.String)
	if !ok {
		return "", "", false, false
	}
	return string(sa), string(sb), true, false
}

// stringBuiltin runs a string built-in of in on its operands in l: the
// result, nil for undefined, and false when the operands are not what the
// fast path takes (the built-in runs instead).
func (p *Program) stringBuiltin(l locals, in *instr) (*ast.Term, bool) {
	if len(in.args) == 1 && in.call.fast == fastIsNull {
		t := raw(l, in.args[0])
		if t == nil {
			return nil, true
		}
		_, null := t.Value.(ast.Null)
		return ast.InternedTerm(null), true
	}
	if len(in.args) != 2 {
		return nil, false
	}
	x, y, ok, undefined := stringOperands(raw(l, in.args[0]), raw(l, in.args[1]))
	if undefined {
		return nil, true
	}
	if !ok {
		return nil, false
	}
	switch in.call.fast {
	case fastStartsWith:
		return ast.InternedTerm(strings.HasPrefix(x, y)), true
	case fastEndsWith:
		return ast.InternedTerm(strings.HasSuffix(x, y)), true
	case fastContains:
		return ast.InternedTerm(strings.Contains(x, y)), true
	case fastRegexMatch:
		re := p.regexOf(in, x)
		if re.err != nil {
			// As the built-in's error: undefined (callers without
			// strict built-in errors see no value).
			return nil, true
		}
		return ast.InternedTerm(re.match(y)), true
	}
	return nil, false
}

// compiledRegex is a pattern as regexp.Compile (what OPA's regex.match
// uses) compiled it, or the error it gave, and its dfa (dfa.go) when it
// has one.
type compiledRegex struct {
	pattern string
	re      *regexp.Regexp
	err     error
	dfa     *dfa
}

// match reports whether the pattern matches text (as re.MatchString).
func (c *compiledRegex) match(text string) bool {
	if c.dfa != nil {
		if matched, ok := c.dfa.match(text); ok {
			return matched
		}
	}
	return c.re.MatchString(text)
}

// regexOf returns pattern compiled: from the statement's cache when it
// holds that pattern (a statement's pattern is usually a constant, a
// policy's data), else from the program's, which keeps up to
// maxRegexes patterns (a statement in a loop over a policy's patterns
// meets several). Compiled patterns are safe for concurrent use.
func (p *Program) regexOf(in *instr, pattern string) *compiledRegex {
	if c := in.regex.Load(); c != nil && c.pattern == pattern {
		return c
	}
	if c, ok := p.regexes.Load(pattern); ok {
		in.regex.Store(c.(*compiledRegex))
		return c.(*compiledRegex)
	}
	re, err := regexp.Compile(pattern)
	c := &compiledRegex{pattern: pattern, re: re, err: err}
	if err == nil {
		c.dfa = newDFA(pattern, &p.dfaStates)
	}
	if p.nregexes.Load() < maxRegexes {
		p.nregexes.Add(1)
		p.regexes.Store(pattern, c)
	}
	in.regex.Store(c)
	return c
}

// maxRegexes bounds the patterns a program keeps compiled.
const maxRegexes = 256
