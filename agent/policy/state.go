package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/storage"
)

// The policy state lives in the engine's data at /pstate (data.pstate in
// Rego). A rule's {allowed: true, ops: [...]} result carries RFC 6902 JSON
// Patch operations on the data document; they may touch /pstate only.

var pstatePath = storage.Path{"pstate"}

// applyOps applies the ops of an allowing result to the policy state: to
// c.pstate and c.data, which planned rules read. The store, which only
// topdown reads (rules without a plan, denial prints), is brought up to
// date by syncStore when topdown is about to read it. The caller holds
// Engine.mu.
func (c *compiled) applyOps(raw any) error {
	list, ok := raw.([]any)
	if !ok {
		return errOpsShape
	}
	if len(list) == 0 {
		return nil
	}
	// The keys of /pstate the ops change or read from ("" for /pstate
	// itself).
	var touched touchedKeys
	for _, o := range list {
		if op, ok := o.(map[string]any); ok {
			for _, field := range []string{"path", "from"} {
				if p, ok := op[field].(string); ok {
					touched = append(touched, stateKey(p))
				}
			}
		}
	}
	// The ops apply to a copy, so that a failing one changes nothing: a
	// copy of the entries they touch; the others are shared with the
	// current state, which nothing changes (an op on them in a later
	// batch works on a copy too).
	var doc any = map[string]any{"pstate": copyTouched(c.pstate, touched)}
	for i, o := range list {
		op, ok := o.(map[string]any)
		if !ok {
			return fmt.Errorf("op %d: %w", i, errOpsShape)
		}
		var err error
		if doc, err = applyOp(doc, op); err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
	}
	next, ok := doc.(map[string]any)["pstate"]
	if !ok {
		next = map[string]any{}
	}
	data, state, err := stateDocument(next, c.state, touched)
	if err != nil {
		return fmt.Errorf("policy state as a value: %w", err)
	}
	c.pstate, c.data, c.state, c.storeStale = next, data, state, true
	return nil
}

// touchedKeys are the keys of /pstate a batch of ops touches; "" stands
// for /pstate itself (every key).
type touchedKeys []string

// has reports whether key is touched.
func (t touchedKeys) has(key string) bool {
	for _, k := range t {
		if k == key || k == "" {
			return true
		}
	}
	return false
}

// copyTouched returns a copy of the state in which the entries touched
// are deep copies and the others are shared.
func copyTouched(state any, touched touchedKeys) any {
	m, ok := state.(map[string]any)
	if !ok || touched.has("") {
		return deepCopy(state)
	}
	out := make(map[string]any, len(m)+len(touched))
	for k, v := range m {
		if touched.has(k) {
			v = deepCopy(v)
		}
		out[k] = v
	}
	return out
}

// stateKey is the key of /pstate that JSON pointer p lies under, "" for
// /pstate itself.
func stateKey(p string) string {
	rest, ok := strings.CutPrefix(p, "/pstate/")
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(rest, "/")
	return strings.ReplaceAll(strings.ReplaceAll(key, "~1", "/"), "~0", "~")
}

// syncStore writes the policy state to the store if ops changed it since
// the last write. The caller holds Engine.mu.
func (c *compiled) syncStore(ctx context.Context) error {
	if !c.storeStale {
		return nil
	}
	txn, err := c.store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return fmt.Errorf("write /pstate: %w", err)
	}
	if err := c.store.Write(ctx, txn, storage.ReplaceOp, pstatePath, deepCopy(c.pstate)); err != nil {
		c.store.Abort(ctx, txn)
		return fmt.Errorf("write /pstate: %w", err)
	}
	if err := c.store.Commit(ctx, txn); err != nil {
		return fmt.Errorf("write /pstate: %w", err)
	}
	c.storeStale = false
	return nil
}

// applyOp applies one RFC 6902 operation to doc and returns the new doc.
func applyOp(doc any, op map[string]any) (any, error) {
	name, _ := op["op"].(string)
	path, ok := op["path"].(string)
	if !ok {
		return nil, fmt.Errorf("%q: no path", name)
	}
	toks, err := pointer(path)
	if err != nil {
		return nil, err
	}
	switch name {
	case "add":
		v, ok := op["value"]
		if !ok {
			return nil, fmt.Errorf("add %s: no value", path)
		}
		return put(doc, toks, deepCopy(v), true)
	case "replace":
		v, ok := op["value"]
		if !ok {
			return nil, fmt.Errorf("replace %s: no value", path)
		}
		if _, err := get(doc, toks); err != nil {
			return nil, fmt.Errorf("replace %s: %w", path, err)
		}
		return put(doc, toks, deepCopy(v), false)
	case "remove":
		return remove(doc, toks)
	case "test":
		got, err := get(doc, toks)
		if err != nil {
			return nil, fmt.Errorf("test %s: %w", path, err)
		}
		if !jsonEqual(got, op["value"]) {
			return nil, fmt.Errorf("test %s: value differs", path)
		}
		return doc, nil
	case "copy", "move":
		from, ok := op["from"].(string)
		if !ok {
			return nil, fmt.Errorf("%s %s: no from", name, path)
		}
		ftoks, err := pointer(from)
		if err != nil {
			return nil, err
		}
		v, err := get(doc, ftoks)
		if err != nil {
			return nil, fmt.Errorf("%s from %s: %w", name, from, err)
		}
		v = deepCopy(v)
		if name == "move" {
			if doc, err = remove(doc, ftoks); err != nil {
				return nil, err
			}
		}
		return put(doc, toks, v, true)
	default:
		return nil, fmt.Errorf("unknown op %q", name)
	}
}

// pointer parses a JSON pointer that must lie under /pstate.
func pointer(p string) ([]string, error) {
	if p != "/pstate" && !strings.HasPrefix(p, "/pstate/") {
		return nil, fmt.Errorf("path %q is outside /pstate", p)
	}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

func get(doc any, toks []string) (any, error) {
	for _, t := range toks {
		switch d := doc.(type) {
		case map[string]any:
			v, ok := d[t]
			if !ok {
				return nil, fmt.Errorf("no member %q", t)
			}
			doc = v
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(d) {
				return nil, fmt.Errorf("no index %q", t)
			}
			doc = d[i]
		default:
			return nil, fmt.Errorf("cannot index %T with %q", doc, t)
		}
	}
	return doc, nil
}

// put sets toks in doc to v; insert selects array insertion (add) over
// replacement.
func put(doc any, toks []string, v any, insert bool) (any, error) {
	if len(toks) == 0 {
		return v, nil
	}
	parent, err := get(doc, toks[:len(toks)-1])
	if err != nil {
		return nil, err
	}
	last := toks[len(toks)-1]
	switch p := parent.(type) {
	case map[string]any:
		p[last] = v
		return doc, nil
	case []any:
		var i int
		if last == "-" && insert {
			i = len(p)
		} else if i, err = strconv.Atoi(last); err != nil || i < 0 || i > len(p) || (!insert && i == len(p)) {
			return nil, fmt.Errorf("bad array index %q", last)
		}
		var np []any
		if insert {
			np = append(append(append([]any{}, p[:i]...), v), p[i:]...)
		} else {
			np = append([]any{}, p...)
			np[i] = v
		}
		return put(doc, toks[:len(toks)-1], np, false)
	default:
		return nil, fmt.Errorf("cannot set %q in a %T", last, parent)
	}
}

func remove(doc any, toks []string) (any, error) {
	if len(toks) < 2 {
		return nil, fmt.Errorf("cannot remove /pstate itself")
	}
	parent, err := get(doc, toks[:len(toks)-1])
	if err != nil {
		return nil, err
	}
	last := toks[len(toks)-1]
	switch p := parent.(type) {
	case map[string]any:
		if _, ok := p[last]; !ok {
			return nil, fmt.Errorf("remove: no member %q", last)
		}
		delete(p, last)
		return doc, nil
	case []any:
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i >= len(p) {
			return nil, fmt.Errorf("remove: bad array index %q", last)
		}
		np := append(append([]any{}, p[:i]...), p[i+1:]...)
		return put(doc, toks[:len(toks)-1], np, false)
	default:
		return nil, fmt.Errorf("remove: cannot index a %T", parent)
	}
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}

func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return reflect.DeepEqual(a, b)
	}
	var na, nb any
	_ = json.Unmarshal(ja, &na)
	_ = json.Unmarshal(jb, &nb)
	return reflect.DeepEqual(na, nb)
}
