package irvm

import (
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Sets of strings in irvm's own form: a sorted slice of distinct string
// terms. A policy's scans build such sets ({e | some e in input.env}) and
// consume them with operations irvm implements (difference, intersection,
// union, membership, count, iteration, concat, any_prefix_match); in this
// form none of those hashes a string (OPA's sets hash every element they
// hold or look up) or allocates a map, and the merge of two sorted slices
// replaces a lookup per element. OPA iterates a set in sorted order and
// orders strings by their bytes, which is the order kept here, so a scan
// sees the elements in the order it would see in an ast.Set. The value
// becomes an ast.Set only where something else needs one (a built-in irvm
// does not implement, a comparison, a result).
//
// An ast.Set whose elements are all strings (a policy's constant data,
// say) takes part in the same merges through its own sorted slice
// (ast.Set.Slice, sorted once per set).

// stringsOf returns t's elements as a sorted slice of distinct strings
// when t is a set of strings (a set being built, or an ast.Set), and
// false otherwise. The slice must not be changed.
func stringsOf(t *ast.Term) ([]*ast.Term, bool) {
	switch v := value(t).(type) {
	case *lazyValue:
		if b, ok := v.Lazy.(*setBuilder); ok {
			return b.strings()
		}
	case ast.Set:
		return setStrings(v)
	}
	return nil, false
}

// setStrings returns s's elements, sorted, when they are all strings. OPA
// sorts a set's elements by type first, so when the first and the last
// are strings every one is.
func setStrings(s ast.Set) ([]*ast.Term, bool) {
	keys := s.Slice()
	if len(keys) == 0 {
		return keys, true
	}
	if !isString(keys[0]) || !isString(keys[len(keys)-1]) {
		return nil, false
	}
	return keys, true
}

func isString(t *ast.Term) bool {
	_, ok := t.Value.(ast.String)
	return ok
}

func str(t *ast.Term) string { return string(t.Value.(ast.String)) }

func compareStrings(a, b *ast.Term) int { return strings.Compare(str(a), str(b)) }

// sortStrings sorts string terms and drops repeats, in place.
//
// A set a policy builds from a request is mostly in order already (a
// container's variables as the pod declares them, then the few the runtime
// adds), so the elements are taken in turn into a sorted prefix, an element
// out of order found its place by binary search: about n + k·log n
// comparisons for k elements out of order, where a general sort makes
// n·log n. A longer slice with many out of order is sorted in general.
func sortStrings(elems []*ast.Term) []*ast.Term {
	inserted := 0
	for i := 1; i < len(elems); i++ {
		x := elems[i]
		if compareStrings(elems[i-1], x) <= 0 {
			continue
		}
		if inserted++; inserted > maxInserts && len(elems) > maxInsertionSort {
			slices.SortFunc(elems, compareStrings)
			break
		}
		// The first of elems[:i] after x.
		lo, hi := 0, i-1
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if compareStrings(elems[m], x) > 0 {
				hi = m
			} else {
				lo = m + 1
			}
		}
		copy(elems[lo+1:i+1], elems[lo:i])
		elems[lo] = x
	}
	return slices.CompactFunc(elems, func(a, b *ast.Term) bool { return str(a) == str(b) })
}

// A slice of up to maxInsertionSort elements is always sorted by
// insertion, a longer one until maxInserts elements were out of order.
const (
	maxInsertionSort = 64
	maxInserts       = 8
)

// searchStrings reports whether sorted holds x.
func searchStrings(sorted []*ast.Term, x *ast.Term) bool {
	s, ok := x.Value.(ast.String)
	if !ok {
		return false
	}
	_, found := slices.BinarySearchFunc(sorted, string(s), func(t *ast.Term, s string) int {
		return strings.Compare(str(t), s)
	})
	return found
}

// Set operations on sorted, distinct strings: each appends its result,
// sorted and distinct, to out.

func diffStrings(out, a, b []*ast.Term) []*ast.Term {
	i, j := 0, 0
	for i < len(a) {
		if j == len(b) {
			return append(out, a[i:]...)
		}
		switch c := compareStrings(a[i], b[j]); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			j++
		default:
			i++
			j++
		}
	}
	return out
}

func intersectStrings(out, a, b []*ast.Term) []*ast.Term {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := compareStrings(a[i], b[j]); {
		case c < 0:
			i++
		case c > 0:
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}

func unionStrings(out, a, b []*ast.Term) []*ast.Term {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := compareStrings(a[i], b[j]); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// setOp is a set operation irvm runs on sets of strings.
type setOp uint8

const (
	setMinus setOp = iota
	setAnd
	setOr
)

func setOpOf(f fastBuiltin) setOp {
	switch f {
	case fastAnd:
		return setAnd
	case fastOr:
		return setOr
	}
	return setMinus
}

// stringSetOp runs op on a and b when both are sets of strings; false
// when either is not (the caller then runs the built-in).
func (e *evaluation) stringSetOp(op setOp, a, b *ast.Term) (*ast.Term, bool) {
	x, ok := stringsOf(a)
	if !ok {
		return nil, false
	}
	y, ok := stringsOf(b)
	if !ok {
		return nil, false
	}
	var out []*ast.Term
	switch op {
	case setMinus:
		out = diffStrings(e.terms.Take(len(x))[:0], x, y)
	case setAnd:
		out = intersectStrings(e.terms.Take(min(len(x), len(y)))[:0], x, y)
	case setOr:
		out = unionStrings(e.terms.Take(len(x) + len(y))[:0], x, y)
	}
	return e.sortedSet(out), true
}

// sortedSet returns a set (a setBuilder's term) of elems, which are
// sorted and distinct strings owned by the caller.
func (e *evaluation) sortedSet(elems []*ast.Term) *ast.Term {
	b := e.sets.Next()
	b.elems, b.sorted = elems, true
	return b.cell.Term(b)
}

// concatStrings is concat(sep, coll) for an array being built or a set of
// strings whose elements are all strings; false otherwise (the built-in
// then runs, and reports a wrong element).
func concatStrings(sep *ast.Term, coll *ast.Term) (*ast.Term, bool) {
	s, ok := value(sep).(ast.String)
	if !ok {
		return nil, false
	}
	var elems []*ast.Term
	if lz, ok := value(coll).(*lazyValue); ok {
		if b, ok := lz.Lazy.(*arrayBuilder); ok {
			elems = b.elems
		} else if elems, ok = stringsOf(coll); !ok {
			return nil, false
		}
	} else if elems, ok = stringsOf(coll); !ok {
		return nil, false
	}
	n := len(s) * max(len(elems)-1, 0)
	for _, t := range elems {
		v, ok := t.Value.(ast.String)
		if !ok {
			return nil, false
		}
		n += len(v)
	}
	var sb strings.Builder
	sb.Grow(n)
	for i, t := range elems {
		if i > 0 {
			sb.WriteString(string(s))
		}
		sb.WriteString(str(t))
	}
	return ast.StringTerm(sb.String()), true
}

// anyPrefixMatch is strings.any_prefix_match(s, prefixes) for a string
// and a set of strings; false otherwise.
func anyPrefixMatch(search, prefixes *ast.Term) (*ast.Term, bool) {
	s, ok := value(search).(ast.String)
	if !ok {
		return nil, false
	}
	ps, ok := stringsOf(prefixes)
	if !ok {
		return nil, false
	}
	for _, p := range ps {
		if strings.HasPrefix(string(s), str(p)) {
			return trueTerm, true
		}
	}
	return falseTerm, true
}
