package undo

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func TestRollbackNewestFirstSkippingForgotten(t *testing.T) {
	var ran []string
	var logs bytes.Buffer
	s := Stack{Cloud: "AWS", Log: slog.New(slog.NewTextHandler(&logs, nil))}
	step := func(name string, err error) func(context.Context) error {
		return func(ctx context.Context) error {
			if ctx.Err() != nil {
				t.Errorf("%s ran on a cancelled context", name)
			}
			ran = append(ran, name)
			return err
		}
	}
	s.Push("a", step("a", nil))
	forget := s.Push("b", step("b", nil))
	s.Push("c", step("c", errors.New("boom")))
	forget()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // an interrupt: cleanup must still run
	s.Rollback(ctx)
	if !slices.Equal(ran, []string{"c", "a"}) {
		t.Errorf("ran %v, want [c a]", ran)
	}
	if !strings.Contains(logs.String(), "leaked an AWS resource") || !strings.Contains(logs.String(), "cleanup: c: boom") {
		t.Errorf("log:\n%s", logs.String())
	}
}

func TestCommitForgetsEverything(t *testing.T) {
	var s Stack
	s.Push("a", func(context.Context) error { t.Error("ran after commit"); return nil })
	s.Commit()
	s.Rollback(context.Background())
}
