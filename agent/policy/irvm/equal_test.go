package irvm

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// equal agrees with ast.Compare on values of the same and of different
// types, numbers written differently among them.
func TestEqual(t *testing.T) {
	values := []string{
		`"a"`, `"b"`, `""`, `"1"`, `"true"`, `true`, `false`, `null`,
		`1`, `1.0`, `1e0`, `2`, `100000000000000000000`, `1e20`,
		`[1, "a"]`, `[1.0, "a"]`, `{"a": 1}`, `{"a": 1.0}`, `{"a"}`, `set()`, `[]`,
	}
	for _, a := range values {
		for _, b := range values {
			ta, tb := ast.MustParseTerm(a), ast.MustParseTerm(b)
			if got, want := equal(ta, tb), ast.Compare(ta.Value, tb.Value) == 0; got != want {
				t.Errorf("equal(%s, %s) = %v, want %v", a, b, got, want)
			}
		}
	}
}
