// Package hypervisor is the remote-hypervisor protocol between the Kata shim
// and peerpodd: the ttrpc service "hypervisor.Hypervisor" (CreateVM, StartVM,
// StopVM, Version), generated from hypervisor.proto. Run `make generate` after
// editing the .proto file.
package hypervisor
