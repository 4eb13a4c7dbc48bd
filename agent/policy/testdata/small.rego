# A small policy in the style of Kata's rules.rego, for the engine tests.
package agent_policy

import rego.v1

default AllowRequestsFailingPolicy := false

default CreateContainerRequest := {"allowed": false}
default CopyFileRequest := false
default ReadStreamRequest := false
default SetPolicyRequest := false

default DestroySandboxRequest := true
default StartContainerRequest := true
default WaitProcessRequest := true

RemoveContainerRequest := {"allowed": true, "ops": ops} if {
	key := concat("", ["cid:", input.container_id])
	data.pstate[key]
	ops := [{"op": "remove", "path": concat("/", ["", "pstate", key])}]
}

RemoveContainerRequest := {"allowed": true} if {
	key := concat("", ["cid:", input.container_id])
	not data.pstate[key]
}

CreateContainerRequest := {"allowed": true, "ops": ops} if {
	some i, c in policy_data.containers
	print("CreateContainerRequest: trying container", i)
	allow_args(c, input.OCI.Process)
	is_null(input.string_user)
	every m in input.OCI.Mounts {
		allow_mount(c, m)
	}
	name := input.OCI.Annotations["io.kubernetes.cri.sandbox-name"]
	allow_sandbox_name(name)
	ops := array.concat(sandbox_ops(name), [{"op": "add", "path": concat("", ["/pstate/cid:", input.container_id]), "value": i}])
}

allow_args(c, p) if {
	c.Args == p.Args
} else := false if {
	print("allow_args: Args differ: policy", c.Args, "input", p.Args)
}

allow_mount(c, m) if {
	some pm in c.Mounts
	pm.destination == m.destination
	pm.type_ == m.type_
}

allow_sandbox_name(name) if {
	not data.pstate.sandbox_name
}

allow_sandbox_name(name) if {
	data.pstate.sandbox_name == name
}

sandbox_ops(name) := [{"op": "add", "path": "/pstate/sandbox_name", "value": name}] if {
	not data.pstate.sandbox_name
} else := []

CopyFileRequest if {
	regex.match(`^/run/kata-containers/shared/containers/[a-z0-9]+-[a-z0-9]{16}-`, input.path)
	not contains(input.path, "..")
	allow_file_type(input)
}

allow_file_type(f) if f.file_type in {"Regular", "Directory"}

allow_file_type(f) if {
	f.file_type == "Symlink"
	not startswith(f.symlink_target, "/")
}

policy_data := {"containers": [
	{"Args": ["/pause"], "Mounts": []},
	{"Args": ["/bin/sh", "-c", "sleep 1"], "Mounts": [{"destination": "/etc/hosts", "type_": "bind"}]},
]}
