"""Talking to hypervisor hosts (libvirt) and GPUs (NVML). Plain data in and out, no ORM."""
