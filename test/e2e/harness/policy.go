package harness

import (
	"fmt"
	"strings"
)

// allowed are the agent requests the tests and the demo make.
var allowed = []string{
	"CreateSandboxRequest", "DestroySandboxRequest", "GuestDetailsRequest",
	"CreateContainerRequest", "StartContainerRequest", "RemoveContainerRequest",
	"ExecProcessRequest", "SignalProcessRequest", "WaitProcessRequest",
	"ReadStreamRequest", "WriteStreamRequest", "CloseStdinRequest", "TtyWinResizeRequest",
	"CopyFileRequest", "StatsContainerRequest", "UpdateContainerRequest", "GetOOMEventRequest",
	"UpdateInterfaceRequest", "UpdateRoutesRequest", "ListInterfacesRequest", "ListRoutesRequest",
	"AddARPNeighborsRequest", "RemoveStaleVirtiofsShareMountsRequest",
}

// TestPolicy is a Rego agent policy allowing every request the tests make,
// with no checks of their content: for test pods only.
func TestPolicy() string {
	var b strings.Builder
	b.WriteString("package agent_policy\n\ndefault AllowRequestsFailingPolicy := false\n\n")
	for _, r := range allowed {
		fmt.Fprintf(&b, "default %s := true\n", r)
	}
	return b.String()
}

// TestInitdata is initdata TOML carrying TestPolicy.
func TestInitdata() string {
	return "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = '''\n" + TestPolicy() + "'''\n"
}
