//! Shared test helpers: start the real binaries, read the printed port,
//! talk over loopback or unix sockets, and never wait without a bound.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const SKD_BIND: &str = env!("CARGO_BIN_EXE_skd-bind");
pub const SKD_ACCEPT: &str = env!("CARGO_BIN_EXE_skd-accept");

/// How long any single wait in a test may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A command with the given program and arguments.
pub fn cmd<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// Runs a command to completion (stdin from /dev/null), killing it after
/// `TIMEOUT`.
pub fn run(mut c: Command) -> Output {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wait_output(c.spawn().expect("spawn"))
}

/// Waits for a spawned child and collects its output, killing it after
/// `TIMEOUT`.
pub fn wait_output(child: Child) -> Output {
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            signal(pid, 9);
            panic!("command did not finish within {TIMEOUT:?}");
        }
    }
}

/// Sends a signal to a process (or, with a negative pid, a process
/// group), ignoring errors: it may be gone already.
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill takes no pointers; any pid and signal number are allowed.
    unsafe { libc::kill(pid, sig) };
}

/// A long-running server under test: its stdout is read line by line, its
/// stderr collected; it is killed (with its process group) when dropped.
pub struct Server {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    /// Starts `c` in a process group of its own.
    pub fn start(mut c: Command) -> Server {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.process_group(0);
        let mut child = c.spawn().expect("spawn server");
        let mut out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let mut byte = [0u8; 1];
            while let Ok(1) = out.read(&mut byte) {
                if byte[0] == b'\n' {
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    buf.clear();
                    if tx.send(line).is_err() {
                        break;
                    }
                } else {
                    buf.push(byte[0]);
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Server {
            child,
            lines,
            stderr,
        }
    }

    /// The next line the server printed on stdout.
    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no line on stdout; stderr: {}", self.stderr()))
    }

    /// Reads the port line printed for port 0.
    pub fn port(&self) -> u16 {
        let line = self.line();
        line.parse()
            .unwrap_or_else(|_| panic!("not a port: {line:?}; stderr: {}", self.stderr()))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until stderr satisfies `pred`.
    pub fn wait_stderr(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = self.stderr();
            if pred(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; stderr: {text}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal and waits (bounded) for the server to exit.
    pub fn stop(&mut self, sig: i32) -> ExitStatus {
        signal(self.pid(), sig);
        self.wait()
    }

    /// Waits (bounded) for the server to exit by itself.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit; stderr: {}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The whole group: the server and any handler still running.
        signal(-self.pid(), 9);
        let _ = self.child.wait();
    }
}

/// Connects to 127.0.0.1:port with bounded reads and writes.
pub fn connect(port: u16) -> TcpStream {
    connect_to(&format!("127.0.0.1:{port}"))
}

pub fn connect_to(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

pub fn connect_unix(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {path:?}: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Sends `input`, half-closes, and reads the whole reply.
pub fn exchange<S: Read + Write>(mut s: S, input: &[u8], shutdown: impl FnOnce(&S)) -> Vec<u8> {
    s.write_all(input).unwrap();
    shutdown(&s);
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

pub fn tcp_exchange(port: u16, input: &[u8]) -> Vec<u8> {
    exchange(connect(port), input, |s| {
        s.shutdown(Shutdown::Write).unwrap()
    })
}

pub fn unix_exchange(path: &Path, input: &[u8]) -> Vec<u8> {
    exchange(connect_unix(path), input, |s| {
        s.shutdown(Shutdown::Write).unwrap()
    })
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("skd-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `cond` until it holds, failing the test after `TIMEOUT`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// The descriptors a process has open.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The pids of `pid`'s children, from /proc (zombies included).
pub fn children(pid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        let Ok(list) = std::fs::read_to_string(path) else {
            continue;
        };
        for child in list.split_whitespace().filter_map(|c| c.parse().ok()) {
            let state = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
                .unwrap_or('?');
            out.push((child, state));
        }
    }
    out
}

/// Whether a Debian peer tool is installed; tests that need one fail with
/// a clear message when it is missing (`.ci/run` installs them).
pub fn require(tool: &str) -> String {
    for dir in [
        "/usr/bin",
        "/bin",
        "/usr/sbin",
        "/sbin",
        "/usr/lib/execline/bin",
    ] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p.to_string_lossy().into_owned();
        }
    }
    panic!("{tool} is not installed: run .ci/run (or apt-get install the package providing it)");
}

/// The descriptors above 2 that this test process would pass to a child
/// (the ones without close-on-exec, such as a jobserver pipe from cargo).
pub fn inheritable_fds() -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
        if fd > 2 && flags.is_some_and(|f| f & libc::O_CLOEXEC as u32 == 0) {
            out.push(fd);
        }
    }
    out
}

// ---------------------------------------------------------------- skd-dgram

pub const SKD_DGRAM: &str = env!("CARGO_BIN_EXE_skd-dgram");

impl Server {
    /// Waits (bounded) until no process holds the server's stdout open any
    /// more, skipping any lines still to come.
    pub fn wait_stdout_closed(&self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("stdout is still open; stderr: {}", self.stderr())
                }
            }
        }
    }
}

/// How many times `pid` has blocked of its own accord (in poll, or waiting
/// for a vfork-like child to exec): a process that spins on a busy loop of
/// system calls piles these up by the thousand each second.
pub fn voluntary_switches(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches in /proc/PID/status")
}

// ---------------------------------------------------------------- skd-background, skd-pidfile

pub const SKD_BACKGROUND: &str = env!("CARGO_BIN_EXE_skd-background");
pub const SKD_PIDFILE: &str = env!("CARGO_BIN_EXE_skd-pidfile");

/// Runs a command that leaves a daemon behind, as `run` does (stdin from
/// /dev/null, stdout captured, killed after `TIMEOUT`), but with stderr
/// going to the file `stderr`: the daemon keeps its stderr open, so a pipe
/// there would never reach end-of-file. The output's stderr is the file's
/// content once the command has exited.
pub fn run_leaving_daemon(mut c: Command, stderr: &Path) -> Output {
    c.stderr(std::fs::File::create(stderr).expect("create the stderr file"));
    let mut out = run_keeping_stderr(c);
    out.stderr = std::fs::read(stderr).expect("read the stderr file");
    out
}

/// `run`, but stderr as the caller set it up.
fn run_keeping_stderr(mut c: Command) -> Output {
    c.stdin(Stdio::null()).stdout(Stdio::piped());
    let child = c.spawn().expect("spawn");
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            signal(pid, 9);
            panic!("command did not finish within {TIMEOUT:?}");
        }
    }
}

/// A daemon left behind by a test: killed with its process group (it is a
/// session leader, and its handlers are in its group) when dropped.
pub struct Daemon(pub i32);

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.0 > 1 {
            signal(-self.0, 9);
            signal(self.0, 9);
        }
    }
}

/// The pids of the processes holding the socket listening on TCP
/// 127.0.0.1:port, found through /proc/net/tcp and /proc/*/fd.
pub fn listener_pids(port: u16) -> Vec<i32> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    let Some(inode) = table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| f[9].to_string())
    }) else {
        return Vec::new();
    };
    let target = format!("socket:[{inode}]");
    let mut pids = Vec::new();
    for proc_entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()))
        {
            pids.push(pid);
        }
    }
    pids
}

/// The one process serving TCP 127.0.0.1:port.
pub fn listener_pid(port: u16) -> i32 {
    let pids = listener_pids(port);
    assert_eq!(
        pids.len(),
        1,
        "processes listening on port {port}: {pids:?}"
    );
    pids[0]
}

/// The fields of /proc/PID/stat after the command name, numbered as in
/// proc(5): `stat_field(pid, 6)` is the session id.
pub fn stat_field(pid: i32, field: usize) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(") ").unwrap();
    rest.split_whitespace()
        .nth(field - 3)
        .unwrap()
        .parse()
        .unwrap()
}

/// The descriptors listed by `ls -l /proc/$$/fd` (number, target), sorted.
pub fn fd_listing(ls: &str) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = ls
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .map(|(l, target)| {
            (
                l.rsplit(' ').next().unwrap().parse().unwrap(),
                target.to_string(),
            )
        })
        .collect();
    fds.sort();
    fds
}

/// 0, 1, 2 and the descriptors this test process passes to every child.
pub fn expected_fds() -> Vec<i32> {
    let mut expected = vec![0, 1, 2];
    expected.extend(inheritable_fds());
    expected.sort();
    expected
}

pub const SKD_LOG: &str = env!("CARGO_BIN_EXE_skd-log");
pub const SKD_SETUID: &str = env!("CARGO_BIN_EXE_skd-setuid");

/// A process's command name (`/proc/PID/comm`), if it exists.
pub fn comm(pid: i32) -> Option<String> {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(name.trim_end().to_owned())
}

/// A process's state letter (`R`, `S`, `Z`, ...), if it exists.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The `Uid:`, `Gid:` and `Groups:` lines of `/proc/PID/status`.
pub fn proc_ids(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("Uid:") || l.starts_with("Gid:") || l.starts_with("Groups:"))
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}

/// The multicall front end (issue 5).
pub const SKD: &str = env!("CARGO_BIN_EXE_skd");
