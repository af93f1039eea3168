// Package kernels is the store of guest kernels (config kernelRoot): Debian
// linux-image packages unpacked side by side, one of them the default, each
// held shared by the VMs booted from it so that removing it is refused
// while one runs. `initos-runtime kernel` adds, lists, removes them and
// sets the default; a container picks one with the annotation
// org.initos.kernel.
package kernels
