// Package types holds the network and volume messages of the Kata agent
// protocol (proto package "types"): Interface, IPAddress, Route, ARPNeighbor
// and the IPFamily and FSGroupChangePolicy enums, generated from types.proto.
package types
