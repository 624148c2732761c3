//! BPF syscall helpers (XDP program, XSKMAP, bpf_link).
