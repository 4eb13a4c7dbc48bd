package api_test

// kataMessages is the wire layout of every message we generate, written by
// hand from the Kata Containers definitions (src/libs/protocols/protos/
// {agent,oci,types,health}.proto and src/runtime/protocols/hypervisor/
// hypervisor.proto; summarised in PROTOCOLS.md §1.5 and §2). It is the
// reference the compatibility tests hold our generated code to, so it must
// never be derived from our own .proto files or descriptors.
//
// Each entry is "name=number type" separated by ";". Types: string, bytes,
// bool, int32, int64, uint32, uint64, enum:<full name>, a message full name,
// "[]T" for repeated, "map<string,T>" for maps; " oneof:<name>" marks a
// member of a oneof.
var kataMessages = map[string]string{
	// hypervisor.proto (package hypervisor)
	"hypervisor.VersionRequest":   "version=1 string",
	"hypervisor.VersionResponse":  "version=1 string",
	"hypervisor.CreateVMRequest":  "id=1 string; annotations=2 map<string,string>; networkNamespacePath=3 string",
	"hypervisor.CreateVMResponse": "agentSocketPath=1 string",
	"hypervisor.StartVMRequest":   "id=1 string",
	"hypervisor.StartVMResponse":  "",
	"hypervisor.StopVMRequest":    "id=1 string",
	"hypervisor.StopVMResponse":   "",

	// health.proto (package grpc)
	"grpc.CheckRequest":         "service=1 string",
	"grpc.HealthCheckResponse":  "status=1 enum:grpc.HealthCheckResponse.ServingStatus",
	"grpc.VersionCheckResponse": "grpc_version=1 string; agent_version=2 string",

	// types.proto (package types)
	"types.IPAddress":   "family=1 enum:types.IPFamily; address=2 string; mask=3 string",
	"types.Interface":   "device=1 string; name=2 string; IPAddresses=3 []types.IPAddress; mtu=4 uint64; hwAddr=5 string; devicePath=6 string; type=7 string; raw_flags=8 uint32",
	"types.Route":       "dest=1 string; gateway=2 string; device=3 string; source=4 string; scope=5 uint32; family=6 enum:types.IPFamily; flags=7 uint32; mtu=8 uint32",
	"types.ARPNeighbor": "toIPAddress=1 types.IPAddress; device=2 string; lladdr=3 string; state=4 int32; flags=5 int32",

	// agent.proto (package grpc): requests and responses
	"grpc.CreateContainerRequest": "container_id=1 string; exec_id=2 string; string_user=3 grpc.StringUser; devices=4 []grpc.Device; " +
		"storages=5 []grpc.Storage; OCI=6 grpc.Spec; sandbox_pidns=7 bool; shared_mounts=8 []grpc.SharedMount; " +
		"stdin_port=9 uint32; stdout_port=10 uint32; stderr_port=11 uint32",
	"grpc.StartContainerRequest":  "container_id=1 string",
	"grpc.RemoveContainerRequest": "container_id=1 string; timeout=2 uint32",
	"grpc.ExecProcessRequest": "container_id=1 string; exec_id=2 string; string_user=3 grpc.StringUser; process=4 grpc.Process; " +
		"stdin_port=5 uint32; stdout_port=6 uint32; stderr_port=7 uint32",
	"grpc.SignalProcessRequest":   "container_id=1 string; exec_id=2 string; signal=3 uint32",
	"grpc.WaitProcessRequest":     "container_id=1 string; exec_id=2 string",
	"grpc.WaitProcessResponse":    "status=1 int32",
	"grpc.UpdateContainerRequest": "container_id=1 string; resources=2 grpc.LinuxResources",
	"grpc.StatsContainerRequest":  "container_id=1 string",
	"grpc.CpuUsage":               "total_usage=1 uint64; percpu_usage=2 []uint64; usage_in_kernelmode=3 uint64; usage_in_usermode=4 uint64",
	"grpc.ThrottlingData":         "periods=1 uint64; throttled_periods=2 uint64; throttled_time=3 uint64",
	"grpc.CpuStats":               "cpu_usage=1 grpc.CpuUsage; throttling_data=2 grpc.ThrottlingData",
	"grpc.PidsStats":              "current=1 uint64; limit=2 uint64",
	"grpc.MemoryData":             "usage=1 uint64; max_usage=2 uint64; failcnt=3 uint64; limit=4 uint64",
	"grpc.MemoryStats": "cache=1 uint64; usage=2 grpc.MemoryData; swap_usage=3 grpc.MemoryData; kernel_usage=4 grpc.MemoryData; " +
		"use_hierarchy=5 bool; stats=6 map<string,uint64>",
	"grpc.BlkioStatsEntry": "major=1 uint64; minor=2 uint64; op=3 string; value=4 uint64",
	"grpc.BlkioStats": "io_service_bytes_recursive=1 []grpc.BlkioStatsEntry; io_serviced_recursive=2 []grpc.BlkioStatsEntry; " +
		"io_queued_recursive=3 []grpc.BlkioStatsEntry; io_service_time_recursive=4 []grpc.BlkioStatsEntry; " +
		"io_wait_time_recursive=5 []grpc.BlkioStatsEntry; io_merged_recursive=6 []grpc.BlkioStatsEntry; " +
		"io_time_recursive=7 []grpc.BlkioStatsEntry; sectors_recursive=8 []grpc.BlkioStatsEntry",
	"grpc.HugetlbStats": "usage=1 uint64; max_usage=2 uint64; failcnt=3 uint64",
	"grpc.CgroupStats": "cpu_stats=1 grpc.CpuStats; memory_stats=2 grpc.MemoryStats; pids_stats=3 grpc.PidsStats; " +
		"blkio_stats=4 grpc.BlkioStats; hugetlb_stats=5 map<string,grpc.HugetlbStats>",
	"grpc.NetworkStats": "name=1 string; rx_bytes=2 uint64; rx_packets=3 uint64; rx_errors=4 uint64; rx_dropped=5 uint64; " +
		"tx_bytes=6 uint64; tx_packets=7 uint64; tx_errors=8 uint64; tx_dropped=9 uint64",
	"grpc.StatsContainerResponse":                "cgroup_stats=1 grpc.CgroupStats; network_stats=2 []grpc.NetworkStats",
	"grpc.RemoveStaleVirtiofsShareMountsRequest": "",
	"grpc.GetDiagnosticDataRequest":              "log_type=1 string; container_id=2 string",
	"grpc.GetDiagnosticDataResponse":             "data=1 string",
	"grpc.WriteStreamRequest":                    "container_id=1 string; exec_id=2 string; data=3 bytes",
	"grpc.WriteStreamResponse":                   "len=1 uint32",
	"grpc.ReadStreamRequest":                     "container_id=1 string; exec_id=2 string; len=3 uint32",
	"grpc.ReadStreamResponse":                    "data=1 bytes",
	"grpc.CloseStdinRequest":                     "container_id=1 string; exec_id=2 string",
	"grpc.TtyWinResizeRequest":                   "container_id=1 string; exec_id=2 string; row=3 uint32; column=4 uint32",
	"grpc.Interfaces":                            "Interfaces=1 []types.Interface",
	"grpc.Routes":                                "Routes=1 []types.Route",
	"grpc.UpdateInterfaceRequest":                "interface=1 types.Interface",
	"grpc.UpdateRoutesRequest":                   "routes=1 grpc.Routes",
	"grpc.ListInterfacesRequest":                 "",
	"grpc.ListRoutesRequest":                     "",
	"grpc.ARPNeighbors":                          "ARPNeighbors=1 []types.ARPNeighbor",
	"grpc.AddARPNeighborsRequest":                "neighbors=1 grpc.ARPNeighbors",
	"grpc.KernelModule":                          "name=1 string; parameters=2 []string",
	"grpc.CreateSandboxRequest": "hostname=1 string; dns=2 []string; storages=3 []grpc.Storage; sandbox_pidns=4 bool; " +
		"sandbox_id=5 string; guest_hook_path=6 string; kernel_modules=7 []grpc.KernelModule",
	"grpc.DestroySandboxRequest": "",
	"grpc.GuestDetailsRequest":   "mem_block_size=1 bool; mem_hotplug_probe=2 bool",
	"grpc.AgentDetails": "version=1 string; init_daemon=2 bool; device_handlers=3 []string; storage_handlers=4 []string; " +
		"supports_seccomp=5 bool; extra_features=6 []string",
	"grpc.GuestDetailsResponse": "mem_block_size_bytes=1 uint64; agent_details=2 grpc.AgentDetails; support_mem_hotplug_probe=3 bool",
	"grpc.FSGroup":              "group_id=2 uint32; group_change_policy=3 enum:types.FSGroupChangePolicy",
	"grpc.SharedMount":          "name=1 string; src_ctr=2 string; src_path=3 string; dst_ctr=4 string; dst_path=5 string",
	"grpc.Storage": "driver=1 string; driver_options=2 []string; source=3 string; fstype=4 string; options=5 []string; " +
		"mount_point=6 string; fs_group=7 grpc.FSGroup; shared=8 bool",
	"grpc.Device":     "id=1 string; type=2 string; vm_path=3 string; container_path=4 string; options=5 []string",
	"grpc.StringUser": "uid=1 string; gid=2 string; additionalGids=3 []string",
	"grpc.CopyFileRequest": "path=1 string; file_size=2 int64; file_mode=3 uint32; dir_mode=4 uint32; uid=5 int32; gid=6 int32; " +
		"offset=7 int64; data=8 bytes",
	"grpc.GetOOMEventRequest": "",
	"grpc.OOMEvent":           "container_id=1 string",
	"grpc.SetPolicyRequest":   "policy=1 string",

	// oci.proto (package grpc)
	"grpc.Spec": "Version=1 string; Process=2 grpc.Process; Root=3 grpc.Root; Hostname=4 string; Mounts=5 []grpc.Mount; " +
		"Hooks=6 grpc.Hooks; Annotations=7 map<string,string>; Linux=8 grpc.Linux; Solaris=9 grpc.Solaris; Windows=10 grpc.Windows",
	"grpc.Process": "Terminal=1 bool; ConsoleSize=2 grpc.Box; User=3 grpc.User; Args=4 []string; Env=5 []string; Cwd=6 string; " +
		"Capabilities=7 grpc.LinuxCapabilities; Rlimits=8 []grpc.POSIXRlimit; NoNewPrivileges=9 bool; ApparmorProfile=10 string; " +
		"OOMScoreAdj=11 int64; SelinuxLabel=12 string",
	"grpc.Box":  "Height=1 uint32; Width=2 uint32",
	"grpc.User": "UID=1 uint32; GID=2 uint32; AdditionalGids=3 []uint32; Username=4 string",
	"grpc.LinuxCapabilities": "Bounding=1 []string; Effective=2 []string; Inheritable=3 []string; Permitted=4 []string; " +
		"Ambient=5 []string",
	"grpc.POSIXRlimit": "Type=1 string; Hard=2 uint64; Soft=3 uint64",
	"grpc.Mount":       "destination=1 string; source=2 string; type=3 string; options=4 []string",
	"grpc.Root":        "Path=1 string; Readonly=2 bool",
	"grpc.Hooks": "Prestart=1 []grpc.Hook; Poststart=2 []grpc.Hook; Poststop=3 []grpc.Hook; CreateRuntime=4 []grpc.Hook; " +
		"CreateContainer=5 []grpc.Hook; StartContainer=6 []grpc.Hook",
	"grpc.Hook": "Path=1 string; Args=2 []string; Env=3 []string; Timeout=4 int64",
	"grpc.Linux": "UIDMappings=1 []grpc.LinuxIDMapping; GIDMappings=2 []grpc.LinuxIDMapping; Sysctl=3 map<string,string>; " +
		"Resources=4 grpc.LinuxResources; CgroupsPath=5 string; Namespaces=6 []grpc.LinuxNamespace; Devices=7 []grpc.LinuxDevice; " +
		"Seccomp=8 grpc.LinuxSeccomp; RootfsPropagation=9 string; MaskedPaths=10 []string; ReadonlyPaths=11 []string; " +
		"MountLabel=12 string; IntelRdt=13 grpc.LinuxIntelRdt",
	"grpc.Windows":        "dummy=1 string",
	"grpc.Solaris":        "dummy=1 string",
	"grpc.LinuxIDMapping": "HostID=1 uint32; ContainerID=2 uint32; Size=3 uint32",
	"grpc.LinuxNamespace": "Type=1 string; Path=2 string",
	"grpc.LinuxDevice":    "Path=1 string; Type=2 string; Major=3 int64; Minor=4 int64; FileMode=5 uint32; UID=6 uint32; GID=7 uint32",
	"grpc.LinuxResources": "Devices=1 []grpc.LinuxDeviceCgroup; Memory=2 grpc.LinuxMemory; CPU=3 grpc.LinuxCPU; Pids=4 grpc.LinuxPids; " +
		"BlockIO=5 grpc.LinuxBlockIO; HugepageLimits=6 []grpc.LinuxHugepageLimit; Network=7 grpc.LinuxNetwork",
	"grpc.LinuxMemory": "Limit=1 int64; Reservation=2 int64; Swap=3 int64; Kernel=4 int64; KernelTCP=5 int64; Swappiness=6 uint64; " +
		"DisableOOMKiller=7 bool",
	"grpc.LinuxCPU": "Shares=1 uint64; Quota=2 int64; Period=3 uint64; RealtimeRuntime=4 int64; RealtimePeriod=5 uint64; " +
		"Cpus=6 string; Mems=7 string",
	"grpc.LinuxWeightDevice":   "Major=1 int64; Minor=2 int64; Weight=3 uint32; LeafWeight=4 uint32",
	"grpc.LinuxThrottleDevice": "Major=1 int64; Minor=2 int64; Rate=3 uint64",
	"grpc.LinuxBlockIO": "Weight=1 uint32; LeafWeight=2 uint32; WeightDevice=3 []grpc.LinuxWeightDevice; " +
		"ThrottleReadBpsDevice=4 []grpc.LinuxThrottleDevice; ThrottleWriteBpsDevice=5 []grpc.LinuxThrottleDevice; " +
		"ThrottleReadIOPSDevice=6 []grpc.LinuxThrottleDevice; ThrottleWriteIOPSDevice=7 []grpc.LinuxThrottleDevice",
	"grpc.LinuxPids":              "Limit=1 int64",
	"grpc.LinuxDeviceCgroup":      "Allow=1 bool; Type=2 string; Major=3 int64; Minor=4 int64; Access=5 string",
	"grpc.LinuxNetwork":           "ClassID=1 uint32; Priorities=2 []grpc.LinuxInterfacePriority",
	"grpc.LinuxHugepageLimit":     "Pagesize=1 string; Limit=2 uint64",
	"grpc.LinuxInterfacePriority": "Name=1 string; Priority=2 uint32",
	"grpc.LinuxSeccomp":           "DefaultAction=1 string; Architectures=2 []string; Flags=3 []string; Syscalls=4 []grpc.LinuxSyscall",
	"grpc.LinuxSeccompArg":        "Index=1 uint64; Value=2 uint64; ValueTwo=3 uint64; Op=4 string",
	"grpc.LinuxSyscall":           "Names=1 []string; Action=2 string; errnoret=3 uint32 oneof:ErrnoRet; Args=4 []grpc.LinuxSeccompArg",
	"grpc.LinuxIntelRdt":          "L3CacheSchema=1 string",
}

// kataEnums are the enum values, from the same sources.
var kataEnums = map[string]map[string]int32{
	"types.IPFamily":                         {"v4": 0, "v6": 1},
	"types.FSGroupChangePolicy":              {"Always": 0, "OnRootMismatch": 1},
	"grpc.HealthCheckResponse.ServingStatus": {"UNKNOWN": 0, "SERVING": 1, "NOT_SERVING": 2},
}

// kataServices are the ttrpc services with, per method, its request and
// response message: the wire names the Kata shim calls. AgentService holds
// the minimal set of PROTOCOLS.md §1.4 plus the recommended extras.
var kataServices = map[string]map[string][2]string{
	"hypervisor.Hypervisor": {
		"CreateVM": {"hypervisor.CreateVMRequest", "hypervisor.CreateVMResponse"},
		"StartVM":  {"hypervisor.StartVMRequest", "hypervisor.StartVMResponse"},
		"StopVM":   {"hypervisor.StopVMRequest", "hypervisor.StopVMResponse"},
		"Version":  {"hypervisor.VersionRequest", "hypervisor.VersionResponse"},
	},
	"grpc.Health": {
		"Check":   {"grpc.CheckRequest", "grpc.HealthCheckResponse"},
		"Version": {"grpc.CheckRequest", "grpc.VersionCheckResponse"},
	},
	"grpc.AgentService": {
		"CreateSandbox":                  {"grpc.CreateSandboxRequest", "google.protobuf.Empty"},
		"DestroySandbox":                 {"grpc.DestroySandboxRequest", "google.protobuf.Empty"},
		"GetGuestDetails":                {"grpc.GuestDetailsRequest", "grpc.GuestDetailsResponse"},
		"SetPolicy":                      {"grpc.SetPolicyRequest", "google.protobuf.Empty"},
		"CreateContainer":                {"grpc.CreateContainerRequest", "google.protobuf.Empty"},
		"StartContainer":                 {"grpc.StartContainerRequest", "google.protobuf.Empty"},
		"RemoveContainer":                {"grpc.RemoveContainerRequest", "google.protobuf.Empty"},
		"ExecProcess":                    {"grpc.ExecProcessRequest", "google.protobuf.Empty"},
		"SignalProcess":                  {"grpc.SignalProcessRequest", "google.protobuf.Empty"},
		"WaitProcess":                    {"grpc.WaitProcessRequest", "grpc.WaitProcessResponse"},
		"ReadStdout":                     {"grpc.ReadStreamRequest", "grpc.ReadStreamResponse"},
		"ReadStderr":                     {"grpc.ReadStreamRequest", "grpc.ReadStreamResponse"},
		"WriteStdin":                     {"grpc.WriteStreamRequest", "grpc.WriteStreamResponse"},
		"CloseStdin":                     {"grpc.CloseStdinRequest", "google.protobuf.Empty"},
		"TtyWinResize":                   {"grpc.TtyWinResizeRequest", "google.protobuf.Empty"},
		"CopyFile":                       {"grpc.CopyFileRequest", "google.protobuf.Empty"},
		"GetOOMEvent":                    {"grpc.GetOOMEventRequest", "grpc.OOMEvent"},
		"StatsContainer":                 {"grpc.StatsContainerRequest", "grpc.StatsContainerResponse"},
		"RemoveStaleVirtiofsShareMounts": {"grpc.RemoveStaleVirtiofsShareMountsRequest", "google.protobuf.Empty"},
		"GetDiagnosticData":              {"grpc.GetDiagnosticDataRequest", "grpc.GetDiagnosticDataResponse"},
		"UpdateContainer":                {"grpc.UpdateContainerRequest", "google.protobuf.Empty"},
		"UpdateInterface":                {"grpc.UpdateInterfaceRequest", "types.Interface"},
		"UpdateRoutes":                   {"grpc.UpdateRoutesRequest", "grpc.Routes"},
		"AddARPNeighbors":                {"grpc.AddARPNeighborsRequest", "google.protobuf.Empty"},
		"ListInterfaces":                 {"grpc.ListInterfacesRequest", "grpc.Interfaces"},
		"ListRoutes":                     {"grpc.ListRoutesRequest", "grpc.Routes"},
	},
}
