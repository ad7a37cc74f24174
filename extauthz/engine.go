package extauthz

import (
	"context"
	"sync/atomic"
)

// Engine holds the current Authorizer and swaps it atomically on reload: a decision that
// started on the old configuration finishes on it, and no request ever sees a half-built one.
type Engine struct {
	current atomic.Pointer[Authorizer]
}

// NewEngine returns an Engine serving a.
func NewEngine(a *Authorizer) *Engine {
	e := &Engine{}
	e.current.Store(a)
	return e
}

// Swap installs a new Authorizer and returns the previous one.
func (e *Engine) Swap(a *Authorizer) *Authorizer { return e.current.Swap(a) }

// Decide judges req with the Authorizer current at the time of the call.
func (e *Engine) Decide(ctx context.Context, req Request) Decision {
	return e.current.Load().Decide(ctx, req)
}
