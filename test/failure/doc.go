// Package failure holds peerpodd's failure tests: peerpodd killed with
// SIGKILL while sandboxes are being created and while others run, provider
// creates that fail half-way, agents that never answer, and malformed
// hypervisor requests. They drive peerpodd only as the Kata runtime does
// (test/kataclient) and check what is left in the provider afterwards.
package failure
