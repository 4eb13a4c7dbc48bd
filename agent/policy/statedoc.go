package policy

import (
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/peerpod/peerpod/agent/policy/irvm"
)

// jsonObject is a JSON object of the policy state (the state itself, or
// the data document around it) as planned rules read it: an irvm.Lazy
// whose members are converted to OPA values when a rule first reads them,
// so that an op changing one entry costs no conversion of the others.
// The converted members are kept, and the next state takes over those of
// the entries no op touched (stateDocument). Every value in obj has been
// converted once already, when an op put it there, so a conversion here
// cannot fail. A jsonObject is read only under Engine.mu.
type jsonObject struct {
	cell    irvm.LazyCell
	obj     map[string]any
	members map[string]*ast.Term // converted so far
}

func newJSONObject(obj map[string]any, members map[string]*ast.Term) *jsonObject {
	j := &jsonObject{obj: obj, members: members}
	j.cell.Term(j)
	return j
}

// term is the term standing for j.
func (j *jsonObject) term() *ast.Term { return j.cell.Term(j) }

// Member returns the member at key, converting it on first use.
func (j *jsonObject) Member(key *ast.Term) *ast.Term {
	s, ok := key.Value.(ast.String)
	if !ok {
		return nil
	}
	if t, ok := j.members[string(s)]; ok {
		return t
	}
	v, ok := j.obj[string(s)]
	if !ok {
		return nil
	}
	var t *ast.Term
	if m, isObject := v.(map[string]any); isObject {
		t = newJSONObject(m, nil).term()
	} else {
		val, err := ast.InterfaceToValue(v)
		if err != nil {
			return nil // not reached: the value was converted when an op put it there
		}
		t = ast.NewTerm(val)
	}
	if j.members == nil {
		j.members = map[string]*ast.Term{}
	}
	j.members[string(s)] = t
	return t
}

// Members makes the object whole.
func (j *jsonObject) Members(f func(k, v *ast.Term) bool) {
	j.Materialize().(ast.Object).Until(f)
}

// Materialize returns the whole object.
func (j *jsonObject) Materialize() ast.Value {
	kvs := make([][2]*ast.Term, 0, len(j.obj))
	for k := range j.obj {
		key := ast.StringTerm(k)
		if t := j.Member(key); t != nil {
			kvs = append(kvs, [2]*ast.Term{key, ast.NewTerm(irvm.Whole(t.Value))})
		}
	}
	return ast.NewObject(kvs...)
}

// Type is "object".
func (j *jsonObject) Type() string { return "object" }

// Len is the number of members.
func (j *jsonObject) Len() int { return len(j.obj) }

// stateDocument returns the data document {"pstate": next} for planned
// rules. old is the current state's jsonObject (nil for none) and touched
// the keys of /pstate the ops changed: the new state keeps old's
// converted members for the keys no op touched and converts the touched
// ones now, which also checks that they convert.
func stateDocument(next any, old *jsonObject, touched touchedKeys) (data ast.Value, state *jsonObject, err error) {
	m, isObject := next.(map[string]any)
	if !isObject {
		v, err := ast.InterfaceToValue(map[string]any{"pstate": next})
		return v, nil, err
	}
	members := make(map[string]*ast.Term, len(m))
	for k, v := range m {
		if touched.has(k) {
			val, err := ast.InterfaceToValue(v)
			if err != nil {
				return nil, nil, err
			}
			members[k] = ast.NewTerm(val)
		} else if t, ok := old.converted(k); ok {
			members[k] = t
		}
		// else: converted when a rule reads it
	}
	state = newJSONObject(m, members)
	doc := &dataDocument{state: state, stateTerm: state.term()}
	return doc.cell.Term(doc).Value, state, nil
}

// dataDocument is the data document {"pstate": state} as planned rules
// read it (an irvm.Lazy).
type dataDocument struct {
	cell      irvm.LazyCell
	state     *jsonObject
	stateTerm *ast.Term // state's
}

const pstateKey = "pstate"

// Member returns the state at "pstate".
func (d *dataDocument) Member(key *ast.Term) *ast.Term {
	if s, ok := key.Value.(ast.String); ok && s == pstateKey {
		return d.stateTerm
	}
	return nil
}

// Members calls f on the one member.
func (d *dataDocument) Members(f func(k, v *ast.Term) bool) {
	f(ast.StringTerm(pstateKey), d.stateTerm)
}

// Materialize returns the whole document.
func (d *dataDocument) Materialize() ast.Value {
	return ast.NewObject(ast.Item(ast.StringTerm(pstateKey), ast.NewTerm(irvm.Whole(d.stateTerm.Value))))
}

// Type is "object".
func (d *dataDocument) Type() string { return "object" }

// Len is 1.
func (d *dataDocument) Len() int { return 1 }

// converted returns the member at key if j has converted it.
func (j *jsonObject) converted(key string) (*ast.Term, bool) {
	if j == nil {
		return nil, false
	}
	t, ok := j.members[key]
	return t, ok
}
