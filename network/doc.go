// Package network gives a container's microVM its network, in one of two
// modes (design.md section 5), entirely through netlink (vishvananda/netlink),
// never by running ip(8) or tc(8):
//
//   - Engine mode (podman/netavark, nerdctl/CNI): the engine has already put an
//     interface with an IPv4 address into the container's network namespace.
//     [AttachToNetns] creates a tap next to it and joins the two with tc mirred
//     redirects both ways (Kata's tcfilter model, firecracker-containerd's
//     tc-redirect-tap). The guest takes over the interface's MAC and address
//     (passed as xip=, see [Attachment.KernelArg]), so the engine's bridge,
//     port publishing and DNS keep working unchanged. The VMM gets the tap as a
//     file descriptor opened inside the namespace ([Attachment.OpenTap]).
//
//   - Late engine mode (buildah's RUN steps): the namespace is new and empty
//     when the VM boots and the engine fills it before start. [CreateTapIn]
//     makes the tap at boot, [LinkTap] finds the engine's interface later and
//     sets the same redirects; the guest takes the interface's MAC and
//     address then (the agent's ConfigureNetwork). [LoopbackUp] brings the
//     new namespace's lo up.
//
//   - Standalone (bridge) mode: a per-host bridge ([EnsureBridge]) with the
//     gateway address, one tap per VM enslaved to it ([CreateTap]), addresses
//     from a file-locked allocator ([IPAM]) and a hosts file that dnsmasq can
//     serve with --addn-hosts ([WriteHost], [RemoveHost]).
//
// Functions without a namespace path act in the calling thread's network
// namespace.
package network
