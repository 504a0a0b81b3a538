// Package progress reports an upload's progress as periodic log lines: what
// was sent, the rate and the time left. The log's handler decides the look
// (compact on a terminal, plain key=value lines in CI).
package progress
