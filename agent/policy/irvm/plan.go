package irvm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
)

// OPA hands the plans of queries prepared for a "target plugin" to that
// plugin. planTarget is one that only captures the plan, into the slot the
// context carries, so that Compile can run it here.

const planTargetName = "peerpod-irvm"

var registerPlanTarget sync.Once

type planSlot struct{ policy *ir.Policy }

type planSlotKey struct{}

type planTarget struct{}

func (planTarget) IsTarget(t string) bool { return t == planTargetName }

func (planTarget) PrepareForEval(ctx context.Context, p *ir.Policy, _ ...rego.PrepareOption) (rego.TargetPluginEval, error) {
	slot, ok := ctx.Value(planSlotKey{}).(*planSlot)
	if !ok {
		return nil, errors.New("irvm: plan target used without a plan slot")
	}
	slot.policy = p
	return noEval{}, nil
}

type noEval struct{}

func (noEval) Eval(context.Context, *rego.EvalContext, ast.Value) (ast.Value, error) {
	return nil, errors.New("irvm: captured plans are run by irvm, not through rego")
}

// Compile plans the query that options describe (rego.Query, rego.Compiler
// or rego.Module, rego.Store, ...) with OPA's planner and prepares it.
func Compile(ctx context.Context, options ...func(*rego.Rego)) (*Program, error) {
	registerPlanTarget.Do(func() { rego.RegisterPlugin(planTargetName, planTarget{}) })
	slot := &planSlot{}
	options = append(options[:len(options):len(options)], rego.Target(planTargetName))
	if _, err := rego.New(options...).PrepareForEval(context.WithValue(ctx, planSlotKey{}, slot)); err != nil {
		return nil, fmt.Errorf("irvm: plan: %w", err)
	}
	return New(slot.policy)
}
