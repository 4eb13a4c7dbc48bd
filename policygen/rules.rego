# peerpod agent policy rules (package agent_policy, the Kata agent's), written
# for the input the agent builds from each request. policygen appends
# "policy_data := {...}" derived from the pod YAML; these rules compare every
# request with it. A failed check prints what differed; the agent puts the
# printed lines into the PermissionDenied message.
package agent_policy

import rego.v1

default AllowRequestsFailingPolicy := false

# Requests that carry nothing the host could abuse.
default DestroySandboxRequest := true
default GetOOMEventRequest := true
default GuestDetailsRequest := true
default OnlineCPUMemRequest := true
default RemoveStaleVirtiofsShareMountsRequest := true
default SignalProcessRequest := true
default StartContainerRequest := true
default StatsContainerRequest := true
default TtyWinResizeRequest := true
default WaitProcessRequest := true

# Requests with rules below.
default CreateContainerRequest := {"allowed": false}
default CreateSandboxRequest := false
default ExecProcessRequest := false
default CopyFileRequest := false
default RemoveContainerRequest := {"allowed": false}

# The policy is pinned by initdata; the host may not replace it.
default SetPolicyRequest := false

# Standard streams and diagnostics follow the generator's settings.
default ReadStreamRequest := false
default WriteStreamRequest := false
default CloseStdinRequest := false
default GetDiagnosticDataRequest := false
default UpdateContainerRequest := false

ReadStreamRequest if policy_data.request_defaults.ReadStreamRequest == true

WriteStreamRequest if policy_data.request_defaults.WriteStreamRequest == true

CloseStdinRequest if policy_data.request_defaults.WriteStreamRequest == true

UpdateContainerRequest if policy_data.request_defaults.UpdateContainerRequest == true

GetDiagnosticDataRequest if input.log_type == "termination_log"

######################################################################
# Sandbox

CreateSandboxRequest if {
	input.guest_hook_path == ""
	count(input.kernel_modules) == 0
	input.sandbox_pidns == false
	every s in input.storages {
		allow_sandbox_storage(s)
	}
}

allow_sandbox_storage(s) if {
	s.driver == "ephemeral"
	s.fstype == "tmpfs"
	s.mount_point == "/run/kata-containers/sandbox/shm"
} else := false if {
	print("CreateSandboxRequest: storage not allowed:", s.driver, s.mount_point)
}

######################################################################
# Containers

CreateContainerRequest := {"allowed": true, "ops": ops} if {
	check_request_shape
	i := container_index
	c := policy_data.containers[i]
	check_sandbox_name
	check_namespace
	check_image(c)
	check_args(c)
	check_env(c)
	check_cwd(c)
	check_user(c)
	check_privileges(c)
	check_mounts(c)
	ops := array.concat(sandbox_name_ops, container_ops(i))
}

# Fields the shim never sets for a confidential pod.
check_request_shape if {
	is_null(input.string_user)
	count(input.shared_mounts) == 0
	count(input.devices) == 0
	is_null(input.OCI.Hooks)
	is_null(input.OCI.Linux.Seccomp)
	count(input.OCI.Linux.UIDMappings) == 0
	count(input.OCI.Linux.GIDMappings) == 0
	input.OCI.Process.SelinuxLabel == ""
} else := false if {
	print("CreateContainerRequest: request uses string_user, shared mounts, devices, hooks, seccomp, ID mappings or an SELinux label")
}

# The pause container is the sandbox entry; others are found by name.
container_index := 0 if {
	input.OCI.Annotations["io.kubernetes.cri.container-type"] == "sandbox"
} else := i if {
	input.OCI.Annotations["io.kubernetes.cri.container-type"] == "container"
	i := policy_data.container_index[input.OCI.Annotations["io.kubernetes.cri.container-name"]]
} else := false if {
	print("container", input.OCI.Annotations["io.kubernetes.cri.container-name"], "of type", input.OCI.Annotations["io.kubernetes.cri.container-type"], "is not in the policy")
}

check_sandbox_name if {
	regex.match(policy_data.sandbox_name_regex, input.OCI.Annotations["io.kubernetes.cri.sandbox-name"])
	allow_sandbox_name_state
} else := false if {
	print("sandbox name", input.OCI.Annotations["io.kubernetes.cri.sandbox-name"], "does not match", policy_data.sandbox_name_regex, "or the sandbox's first container")
}

allow_sandbox_name_state if not data.pstate.sandbox_name

allow_sandbox_name_state if data.pstate.sandbox_name == input.OCI.Annotations["io.kubernetes.cri.sandbox-name"]

sandbox_name_ops := [{"op": "add", "path": "/pstate/sandbox_name", "value": input.OCI.Annotations["io.kubernetes.cri.sandbox-name"]}] if {
	not data.pstate.sandbox_name
} else := []

container_ops(i) := [{"op": "add", "path": concat("", ["/pstate/c_", input.container_id]), "value": i}]

check_namespace if {
	policy_data.namespace == ""
} else if {
	input.OCI.Annotations["io.kubernetes.cri.sandbox-namespace"] == policy_data.namespace
} else := false if {
	print("namespace: policy", policy_data.namespace, "request", input.OCI.Annotations["io.kubernetes.cri.sandbox-namespace"])
}

# The image: the guest-pull storage and the CRI annotation must name the
# pinned reference.
check_image(c) if {
	some s in input.storages
	s.driver == "image_guest_pull"
	s.source == c.image
	every t in input.storages {
		allow_container_storage(t, c)
	}
} else := false if {
	print("image: policy", c.image, "request", [s.source | some s in input.storages; s.driver == "image_guest_pull"])
}

allow_container_storage(s, c) if {
	s.driver == "image_guest_pull"
	s.source == c.image
}

allow_container_storage(s, _) if {
	s.driver in {"local", "ephemeral"}
	startswith(s.mount_point, "/run/kata-containers/sandbox/")
}

check_args(c) if {
	input.OCI.Process.Args == c.args
} else := false if {
	print("command: policy", c.args, "request", input.OCI.Process.Args)
}

# c.env and c.env_any_value are sets. The input's entries beyond c.env must
# be ones whose name is not pinned (c.env_any_value), or ones the runtime
# adds: those are checked together, one regular expression match over all
# of them (one line each), not one match per entry.
input_env := {e | some e in input.OCI.Process.Env}

check_env(c) if {
	count(c.env - input_env) == 0
	any_value := {concat("", [n, "="]) | some n in c.env_any_value}
	runtime := [e | some e in input_env - c.env; not strings.any_prefix_match(e, any_value)]
	runtime_env_ok(runtime)
} else := false if {
	print("env: not allowed", sort({e | some e in input_env - c.env; not env_extra_ok(c, e)}), "missing", sort(c.env - input_env))
}

# Variables the runtime adds, one per line (none may hold a newline).
runtime_env_ok([])

runtime_env_ok(runtime) if {
	not contains(concat("", runtime), "\n")
	regex.match(policy_data.common.env_lines_regex, concat("", [concat("\n", runtime), "\n"]))
}

env_extra_ok(c, e) if c.env_any_value[split(e, "=")[0]]

env_extra_ok(_, e) if regex.match(policy_data.common.env_regex, e)

check_cwd(c) if {
	input.OCI.Process.Cwd == c.cwd
} else := false if {
	print("working dir: policy", c.cwd, "request", input.OCI.Process.Cwd)
}

check_user(c) if {
	is_null(c.uid)
} else if {
	input.OCI.Process.User.UID == c.uid
} else := false if {
	print("user: policy uid", c.uid, "request uid", input.OCI.Process.User.UID)
}

check_privileges(c) if {
	input.OCI.Root.Readonly == c.read_only_root
	input.OCI.Process.NoNewPrivileges == c.no_new_privileges
	check_caps(c)
} else := false if {
	print("security context: policy privileged", c.privileged, "readOnlyRootFilesystem", c.read_only_root, "noNewPrivileges", c.no_new_privileges, "request readonly", input.OCI.Root.Readonly, "noNewPrivileges", input.OCI.Process.NoNewPrivileges)
}

check_caps(c) if c.privileged == true

# c.capabilities is an object keyed by the allowed capabilities: a list is
# allowed when every entry is one of its keys (one lookup per entry).
check_caps(c) if {
	c.privileged == false
	caps := input.OCI.Process.Capabilities
	caps_ok(c, caps.Bounding)
	caps_ok(c, caps.Effective)
	caps_ok(c, caps.Permitted)
	caps_ok(c, caps.Inheritable)
	caps_ok(c, caps.Ambient)
} else := false if {
	caps := input.OCI.Process.Capabilities
	print("capabilities not allowed:", sort({x | some set in [caps.Bounding, caps.Effective, caps.Permitted, caps.Inheritable, caps.Ambient]; some x in set; not c.capabilities[x]}))
}

caps_ok(c, list) if {
	every x in list {
		c.capabilities[x]
	}
}

# c.mounts maps a destination to its type, source prefix and read-only
# flag; c.required_mounts and c.ro_mounts are sets of destinations.
check_mounts(c) if {
	count([1 |
		some m in input.OCI.Mounts
		pm := c.mounts[m.destination]
		pm.type_ == m.type_
		startswith(m.source, pm.source_prefix)
	]) == count(input.OCI.Mounts)
	count(c.required_mounts - input_mount_dests) == 0
	count((c.ro_mounts & input_mount_dests) - input_ro_dests) == 0
} else := false if {
	print("mounts: not allowed", [m.destination | some m in input.OCI.Mounts; not mount_ok(c, m)], "missing", sort(c.required_mounts - input_mount_dests), "not read-only", sort((c.ro_mounts & input_mount_dests) - input_ro_dests))
}

input_mount_dests := {m.destination | some m in input.OCI.Mounts}

input_ro_dests := {m.destination | some m in input.OCI.Mounts; "ro" in m.options}

# Bind mount sources must be what the shim copied into the VM (or the
# sandbox's shared memory), never elsewhere in the guest.
mount_ok(c, m) if {
	pm := c.mounts[m.destination]
	pm.type_ == m.type_
	startswith(m.source, pm.source_prefix)
}

RemoveContainerRequest := {"allowed": true, "ops": [{"op": "remove", "path": key}]} if {
	data.pstate[concat("", ["c_", input.container_id])]
	key := concat("", ["/pstate/c_", input.container_id])
}

RemoveContainerRequest := {"allowed": true} if {
	not data.pstate[concat("", ["c_", input.container_id])]
}

######################################################################
# Exec: only the commands the pod declares (exec probes, lifecycle hooks).

ExecProcessRequest if {
	is_null(input.string_user)
	input.process.SelinuxLabel == ""
	i := data.pstate[concat("", ["c_", input.container_id])]
	c := policy_data.containers[i]
	input.process.Args in c.exec_commands
} else := false if {
	print("exec:", input.process.Args, "is not an exec command of container", input.container_id)
}

######################################################################
# Files the shim copies in (ConfigMaps, Secrets, /etc/hosts, ...).

CopyFileRequest if {
	regex.match(policy_data.common.copy_file_regex, input.path)
	not contains(input.path, "/../")
	not endswith(input.path, "/..")
	allow_copy_type(input)
} else := false if {
	print("CopyFile:", input.path, input.file_type, "is not allowed")
}

allow_copy_type(f) if f.file_type in {"Regular", "Directory"}

allow_copy_type(f) if {
	f.file_type == "Symlink"
	not startswith(f.symlink_target, "/")
	not contains(concat("", ["/", f.symlink_target, "/"]), "/../")
}
