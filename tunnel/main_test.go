package tunnel

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test and benchmark must leave no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
