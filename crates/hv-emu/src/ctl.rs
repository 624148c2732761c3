//! The runtime control socket: a Unix stream socket (`DIR/ctl.sock` under `netvsc emulate`) served by one thread
//! with an accept loop. One JSON line per request, `{"cmd":"vf","args":["offer"]}`, and one per reply,
//! `{"ok":true,...}` or `{"ok":false,"error":"..."}`; a connection may carry any number of requests.
//!
//! Commands come from a small [`Registry`] (name → handler), so other parts add theirs (`link`, `gen`, `fault`…)
//! without touching the server. A handler returns the reply's extra fields (a JSON object) or an error message.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// A command handler: the arguments after the command name → reply fields, or why it was refused.
pub type Handler = Box<dyn Fn(&[String]) -> Result<Value, String> + Send + Sync>;

/// Longest request line accepted (bytes).
const MAX_LINE: usize = 64 * 1024;

/// Named commands of the control socket.
#[derive(Default)]
pub struct Registry {
    commands: RwLock<BTreeMap<String, (String, Handler)>>,
}

impl Registry {
    /// Add (or replace) command `name`; `usage` is shown by `help` and in errors.
    pub fn register(
        &self,
        name: &str,
        usage: &str,
        handler: impl Fn(&[String]) -> Result<Value, String> + Send + Sync + 'static,
    ) {
        self.commands
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (usage.to_string(), Box::new(handler)));
    }

    /// The registered command names with their usage lines.
    pub fn usage(&self) -> Vec<(String, String)> {
        self.commands
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, (u, _))| (k.clone(), u.clone()))
            .collect()
    }

    /// Run one command; the reply object (`ok` first).
    pub fn call(&self, cmd: &str, args: &[String]) -> Value {
        if cmd == "help" {
            let list: Vec<Value> = self.usage().into_iter().map(|(_, u)| u.into()).collect();
            return json!({ "ok": true, "commands": list });
        }
        let commands = self.commands.read().unwrap_or_else(|p| p.into_inner());
        let Some((_, h)) = commands.get(cmd) else {
            let names: Vec<&str> = commands.keys().map(String::as_str).collect();
            return refuse(format!(
                "unknown command '{cmd}' (one of: {}, help)",
                names.join(", ")
            ));
        };
        // A handler that panics must not take the server down.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(args))) {
            Ok(Ok(v)) => {
                let mut out = Map::new();
                out.insert("ok".into(), true.into());
                match v {
                    Value::Object(m) => out.extend(m),
                    Value::Null => {}
                    other => {
                        out.insert("result".into(), other);
                    }
                }
                Value::Object(out)
            }
            Ok(Err(e)) => refuse(e),
            Err(_) => refuse(format!("command '{cmd}' failed internally")),
        }
    }

    /// Parse one request line and run it; the reply line (without the newline).
    pub fn handle_line(&self, line: &str) -> String {
        let reply = match serde_json::from_str::<Value>(line) {
            Err(e) => refuse(format!(
                "bad request (want {{\"cmd\":..,\"args\":[..]}}): {e}"
            )),
            Ok(v) => match parse_request(&v) {
                Ok((cmd, args)) => self.call(&cmd, &args),
                Err(e) => refuse(e),
            },
        };
        reply.to_string()
    }
}

fn refuse(e: impl Into<String>) -> Value {
    json!({ "ok": false, "error": e.into() })
}

fn parse_request(v: &Value) -> Result<(String, Vec<String>), String> {
    let cmd = v
        .get("cmd")
        .and_then(Value::as_str)
        .ok_or("bad request: 'cmd' must be a string")?;
    let args = match v.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err("bad request: 'args' must hold strings".to_string()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("bad request: 'args' must be an array".into()),
    };
    Ok((cmd.to_string(), args))
}

/// A serving control socket; dropping it stops the thread and removes the socket file.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Bind `path` (a stale socket file there is replaced) and serve `registry` on a thread.
    pub fn start(path: &Path, registry: Arc<Registry>) -> std::io::Result<ControlServer> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("hv-emu-ctl".into())
            .spawn(move || accept_loop(&listener, &registry, &s))?;
        Ok(ControlServer {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: &UnixListener, registry: &Arc<Registry>, stop: &Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let r = registry.clone();
                let s = stop.clone();
                let _ = std::thread::Builder::new()
                    .name("hv-emu-ctl-conn".into())
                    .spawn(move || serve(stream, &r, &s));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// One connection: request lines until EOF (or the server stops).
fn serve(stream: UnixStream, registry: &Registry, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) if line.ends_with(b"\n") || line.len() > MAX_LINE => {
                let reply = if line.len() > MAX_LINE {
                    refuse("request line too long").to_string()
                } else {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim();
                    if text.is_empty() {
                        line.clear();
                        continue;
                    }
                    registry.handle_line(text)
                };
                line.clear();
                if out
                    .write_all(reply.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .is_err()
                {
                    break;
                }
            }
            Ok(_) => {
                // EOF without a newline: answer what came.
                let text = String::from_utf8_lossy(&line).trim().to_string();
                if !text.is_empty() {
                    let _ = out.write_all(format!("{}\n", registry.handle_line(&text)).as_bytes());
                }
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
}

/// Client side (tests, tools): send one request, read one reply line.
pub fn request(path: &Path, cmd: &str, args: &[&str]) -> std::io::Result<Value> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = json!({ "cmd": cmd, "args": args });
    s.write_all(format!("{req}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
