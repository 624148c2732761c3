//! Builds the LD_PRELOAD uio interposer (`interposer/uio_interposer.c`) as a shared object in OUT_DIR, with the
//! DPDK 22.11 queue-state workaround compiled in when the DPDK headers are installed.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "interposer/uio_interposer.c";

fn dpdk_flags() -> Option<Vec<String>> {
    if !Path::new("/usr/include/dpdk/rte_ethdev.h").exists()
        && env::var_os("HV_EMU_DPDK_CFLAGS").is_none()
    {
        return None;
    }
    if let Ok(flags) = env::var("HV_EMU_DPDK_CFLAGS") {
        return Some(flags.split_whitespace().map(str::to_owned).collect());
    }
    // Only the include flags: pkg-config's -march and friends are not needed for a struct field offset.
    let out = Command::new("pkg-config")
        .args(["--cflags-only-I", "libdpdk"])
        .output()
        .ok();
    let mut flags: Vec<String> = match out {
        Some(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        _ => vec![
            "-I/usr/include/dpdk".into(),
            "-I/usr/include/x86_64-linux-gnu/dpdk".into(),
        ],
    };
    flags.extend([
        "-include".into(),
        "rte_config.h".into(),
        "-DHV_EMU_HAVE_DPDK".into(),
    ]);
    Some(flags)
}

fn compile(out: &Path, extra: &[String]) -> Result<(), String> {
    let compiler = cc::Build::new().cargo_metadata(false).get_compiler();
    let mut cmd = compiler.to_command();
    cmd.args(["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-o"])
        .arg(out)
        .arg(SOURCE)
        .args(extra)
        .arg("-ldl");
    let result = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if result.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&result.stderr)
        ))
    }
}

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HV_EMU_DPDK_CFLAGS");
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("libhvemu_uio.so");
    let mut with_dpdk = false;
    if let Some(flags) = dpdk_flags() {
        match compile(&out, &flags) {
            Ok(()) => with_dpdk = true,
            Err(e) => {
                println!("cargo:warning=interposer built without the DPDK queue-state fix: {e}")
            }
        }
    }
    if !with_dpdk && let Err(e) = compile(&out, &[]) {
        panic!("cannot build the uio interposer: {e}");
    }
    println!(
        "cargo:rustc-env=HV_EMU_INTERPOSER_DPDK={}",
        u8::from(with_dpdk)
    );
}
