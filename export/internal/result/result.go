// Package result hands a publisher package's own result to export.
package result

import "github.com/layerimg/layerimg/export"

// Of is res and err as export.Publisher.Publish returns them: a nil *R
// becomes a nil export.Result, not an interface holding a typed nil, and
// a result that comes with an error (part of the work done) is kept.
func Of[R any, P interface {
	*R
	export.Result
}](res P, err error) (export.Result, error) {
	if res == nil {
		return nil, err
	}
	return res, err
}
