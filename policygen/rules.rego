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
	some i, c in policy_data.containers
	container_matches(c)
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

container_type := input.OCI.Annotations["io.kubernetes.cri.container-type"]

# The pause container matches the sandbox entry, others match by name.
container_matches(c) if {
	c.sandbox == true
	container_type == "sandbox"
}

container_matches(c) if {
	c.sandbox == false
	container_type == "container"
	input.OCI.Annotations["io.kubernetes.cri.container-name"] == c.name
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

check_env(c) if {
	every e in input.OCI.Process.Env {
		allow_env(e, c)
	}
	every e in c.env {
		e in input.OCI.Process.Env
	}
} else := false if {
	print("env: not allowed", [e | some e in input.OCI.Process.Env; not allow_env(e, c)], "missing", [e | some e in c.env; not e in input.OCI.Process.Env])
}

allow_env(e, c) if e in c.env

allow_env(e, c) if {
	name := split(e, "=")[0]
	name in c.env_any_value
}

allow_env(e, _) if {
	some r in policy_data.common.env_regex
	regex.match(r, e)
}

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

check_caps(c) if {
	c.privileged == false
	caps := input.OCI.Process.Capabilities
	extra := {x | some set in [caps.Bounding, caps.Effective, caps.Permitted, caps.Inheritable, caps.Ambient]; some x in set; not x in c.capabilities}
	count(extra) == 0
} else := false if {
	caps := input.OCI.Process.Capabilities
	print("capabilities not allowed:", sort({x | some set in [caps.Bounding, caps.Effective, caps.Permitted]; some x in set; not x in c.capabilities}))
}

check_mounts(c) if {
	every m in input.OCI.Mounts {
		allow_mount(m, c)
	}
	every pm in c.mounts {
		mount_present(pm)
	}
} else := false if {
	print("mounts: not allowed", [m.destination | some m in input.OCI.Mounts; not allow_mount(m, c)], "missing", [pm.destination | some pm in c.mounts; not mount_present(pm)])
}

mount_present(pm) if pm.required == false

mount_present(pm) if {
	some m in input.OCI.Mounts
	m.destination == pm.destination
}

allow_mount(m, c) if {
	some pm in c.mounts
	pm.destination == m.destination
	pm.type_ == m.type_
	mount_source_ok(m)
	mount_ro_ok(pm, m)
}

# Bind mounts come from what the shim copied into the VM, never from
# elsewhere in the guest.
mount_source_ok(m) if m.type_ != "bind"

mount_source_ok(m) if {
	m.type_ == "bind"
	regex.match(policy_data.common.bind_source_regex, m.source)
}

mount_ro_ok(pm, _) if pm.read_only == false

mount_ro_ok(pm, m) if {
	pm.read_only == true
	"ro" in m.options
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
