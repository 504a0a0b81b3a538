// Package undo keeps the cleanup steps for cloud resources a publish has
// made but not finished (a snapshot not yet registered, a disk with write
// access granted) and runs them, newest first, when the publish fails.
package undo

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Timeout bounds a rollback. Deleting a managed disk or a snapshot can take
// minutes; an interrupted run must still end.
const Timeout = 10 * time.Minute

// Stack is one publish's cleanup steps. The zero value is ready to use and
// logs nothing. Steps may be pushed from several goroutines.
type Stack struct {
	// Cloud names the cloud in the message about a resource left behind.
	Cloud string
	Log   *slog.Logger
	// Redact, if set, scrubs secrets (such as SAS tokens) from an error
	// before it is logged.
	Redact func(error) error

	mu    sync.Mutex
	steps []func(context.Context) error
}

// Push registers fn, which undoes what. The returned func forgets the step
// once what it guards is complete (a copy that finished, an import task that
// produced its snapshot).
func (s *Stack) Push(what string, fn func(context.Context) error) (forget func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := len(s.steps)
	s.steps = append(s.steps, func(ctx context.Context) error {
		if err := fn(ctx); err != nil {
			return fmt.Errorf("cleanup: %s: %w", what, err)
		}
		s.log().Info("cleaned up", "what", what)
		return nil
	})
	return func() {
		s.mu.Lock()
		s.steps[i] = nil
		s.mu.Unlock()
	}
}

// Commit forgets every step so far: what they guard is complete and stays.
func (s *Stack) Commit() {
	s.mu.Lock()
	clear(s.steps)
	s.mu.Unlock()
}

// Rollback runs the remaining steps, newest first, on a context of its own
// (bounded by Timeout): an interrupt that cancelled ctx must still be able
// to delete what it left behind. A step that fails is logged, and the rest
// still run.
func (s *Stack) Rollback(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), Timeout)
	defer cancel()
	s.mu.Lock()
	steps := slices.Clone(s.steps)
	s.mu.Unlock()
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i] == nil {
			continue
		}
		if err := steps[i](cctx); err != nil {
			if s.Redact != nil {
				err = s.Redact(err)
			}
			s.log().Error("leaked "+article(s.Cloud)+" resource; delete it by hand", "err", err)
		}
	}
}

func (s *Stack) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// article keeps the log message as it was: "an AWS resource", "an Azure
// resource".
func article(cloud string) string {
	if cloud == "" {
		return "a cloud"
	}
	switch cloud[0] {
	case 'A', 'E', 'I', 'O', 'U':
		return "an " + cloud
	}
	return "a " + cloud
}
