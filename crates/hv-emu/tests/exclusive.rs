//! One emulator per directory: a second `Emulator::start` on a served directory fails with `Busy` naming the
//! serving pid (here, and from another process); once the server is gone (dropped, or killed with -9) the
//! directory can be served again.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use hv_emu::emulator::{Emulator, EmulatorConfig, EmulatorError, emulator_lock_path};

const DIR_ENV: &str = "HV_EMU_EXCLUSIVE_DIR";

fn config(dir: &std::path::Path) -> EmulatorConfig {
    let mut c = EmulatorConfig::new(dir);
    c.ring_size = 64 << 10;
    c.recv_size = 1 << 20;
    c.send_size = 1 << 20;
    c
}

#[test]
#[ignore = "run by a_killed_emulator_frees_its_directory as its child"]
fn serve_directory_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let emu = Emulator::start(config(std::path::Path::new(&dir))).expect("child serves");
    println!("SERVING {}", std::process::id());
    std::thread::sleep(std::time::Duration::from_secs(120));
    drop(emu);
}

#[test]
fn a_served_directory_is_refused_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(config(dir.path())).unwrap();
    match Emulator::start(config(dir.path())) {
        Err(EmulatorError::Busy { pid, dir: d }) => {
            assert_eq!(pid, std::process::id());
            assert_eq!(d, dir.path());
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a second emulator took over a served directory"),
    }
    assert_eq!(
        vmbus_uio::OwnerLock::holder(&emulator_lock_path(dir.path())).unwrap(),
        Some(std::process::id())
    );
    drop(emu);
    let again = Emulator::start(config(dir.path())).expect("free once the first is dropped");
    drop(again);
}

#[test]
fn a_killed_emulator_frees_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "serve_directory_child",
            "--ignored",
            "--nocapture",
        ])
        .env(DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split_once("SERVING ").map(|(_, p)| p.trim().to_string()));
    assert_eq!(
        pid,
        Some(child.id().to_string()),
        "child serves the directory"
    );
    match Emulator::start(config(dir.path())) {
        Err(EmulatorError::Busy { pid, .. }) => assert_eq!(pid, child.id()),
        other => {
            let _ = child.kill();
            panic!("second emulator while served: {:?}", other.err());
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let emu = Emulator::start(config(dir.path())).expect("served again after kill -9");
    drop(emu);
}
