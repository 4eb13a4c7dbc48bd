// Package agent is the Kata agent protocol as peerpod speaks it: the ttrpc
// services "grpc.AgentService" and "grpc.Health" and the OCI spec messages they
// carry, generated from agent.proto, oci.proto and health.proto. Empty
// responses are google.protobuf.Empty (emptypb.Empty). Run `make generate`
// after editing a .proto file.
package agent
