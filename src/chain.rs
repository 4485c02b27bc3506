//! What every tool does at the start and at the end of its step: adopt the
//! environment and the readiness descriptor, and exec the next program.
//!
//! Readiness protocol (see skd-background(8)): `skd-background` exports
//! `SKD_READY_FD=N`, the write end of a pipe it waits on. Each skd tool
//! adopts it (close-on-exec, removed from the environment) and passes it on
//! only when the next program is another skd tool. A serving tool closes it
//! once it serves; exec'ing any other program closes it too (close-on-exec).
//! The waiting side sees end-of-file: ready. A tool that fails first writes
//! its exit status as one byte, then dies.
//!
//! Held descriptors (see skd-pidfile(8)): a descriptor that must stay open
//! as long as the daemon runs (the pidfile's lock) is handed on the same
//! way in `SKD_PIDFILE_FD=N[,N...]`: adopted close-on-exec (so that handlers
//! spawned by a server never see it), passed on with the variable to the
//! next skd tool, and left open without the variable when the next program
//! is not an skd tool, because that program is then the daemon.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::Error;
use crate::sys;

/// The variable that carries the readiness descriptor's number.
pub const READY_VAR: &str = "SKD_READY_FD";

/// The variable that carries the numbers of the held descriptors.
pub const HELD_VAR: &str = "SKD_PIDFILE_FD";

/// The programs of this toolset: the names the multicall binary answers to
/// and the next programs that understand the readiness protocol.
pub const TOOLS: &[&str] = &[
    "skd",
    "skd-accept",
    "skd-background",
    "skd-bind",
    "skd-dgram",
    "skd-log",
    "skd-pidfile",
    "skd-setuid",
];

/// The adopted readiness descriptor, or -1. Process-wide by nature: it is
/// needed wherever the process may die.
static READY_FD: AtomicI32 = AtomicI32::new(-1);

/// The descriptors held for the daemon's lifetime, close-on-exec until the
/// exec that ends this step.
static HELD: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// The environment as `(name, value)` pairs, kept as `OsString` from start
/// to exec.
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: Vec<(OsString, OsString)>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars_os().collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }

    pub fn set(&mut self, name: &str, value: impl Into<OsString>) {
        let value = value.into();
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.into(), value)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<OsString> {
        let at = self.vars.iter().position(|(k, _)| k == name)?;
        Some(self.vars.remove(at).1)
    }

    /// `NAME=value` strings for exec (entries with a NUL are dropped: they
    /// cannot be passed on anyway).
    pub fn to_c(&self) -> Vec<CString> {
        self.vars
            .iter()
            .filter_map(|(k, v)| {
                let mut entry = k.clone().into_vec();
                entry.push(b'=');
                entry.extend_from_slice(v.as_bytes());
                CString::new(entry).ok()
            })
            .collect()
    }
}

/// Starts a tool's step: reads the environment and adopts the readiness
/// descriptor if our caller handed us one.
pub fn start() -> Env {
    let mut env = Env::from_process();
    if let Some(fd) = env.remove(READY_VAR).and_then(|v| parse_fd(&v))
        && sys::is_open(fd)
        && sys::set_cloexec(sys::borrow_raw(fd), true).is_ok()
    {
        READY_FD.store(fd, Ordering::Relaxed);
    }
    if let Some(list) = env.remove(HELD_VAR) {
        for fd in parse_fd_list(&list) {
            if sys::is_open(fd) && sys::set_cloexec(sys::borrow_raw(fd), true).is_ok() {
                held().push(fd);
            }
        }
    }
    env
}

fn held() -> std::sync::MutexGuard<'static, Vec<RawFd>> {
    // The process is single-threaded: the lock cannot be poisoned by a
    // panic elsewhere, and if it were, the list itself is still sound.
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// The held descriptors' numbers from `N[,N...]`; bad entries are skipped.
fn parse_fd_list(value: &OsStr) -> Vec<RawFd> {
    let Some(text) = value.to_str() else {
        return Vec::new();
    };
    let mut fds: Vec<RawFd> = text
        .split(',')
        .filter_map(|n| parse_fd(OsStr::new(n)))
        .collect();
    fds.sort_unstable();
    fds.dedup();
    fds
}

/// Keeps `fd` open for the rest of the chain and in the program that ends
/// it, but never in the handlers a server spawns (see the module comment).
pub fn hold(fd: OwnedFd) {
    held().push(fd.into_raw_fd());
}

/// The held descriptors.
pub fn held_fds() -> Vec<RawFd> {
    held().clone()
}

fn parse_fd(value: &OsStr) -> Option<RawFd> {
    let fd: RawFd = value.to_str()?.parse().ok()?;
    (fd > 2).then_some(fd)
}

/// The adopted readiness descriptor, if any.
pub fn ready_fd() -> Option<RawFd> {
    let fd = READY_FD.load(Ordering::Relaxed);
    (fd >= 0).then_some(fd)
}

/// Makes `fd` the readiness descriptor passed down the chain, in place of
/// (and closing) any adopted one: `skd-background`'s child, whose own
/// waiting parent answers to the outer one.
pub fn set_ready_fd(fd: OwnedFd) {
    let old = READY_FD.swap(fd.into_raw_fd(), Ordering::Relaxed);
    if old >= 0 {
        sys::close_raw(old);
    }
}

/// Declares the chain ready: closes the readiness descriptor, which releases
/// a waiting `skd-background`.
pub fn ready() {
    let fd = READY_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        sys::close_raw(fd);
    }
}

/// Tells a waiting `skd-background` that the chain failed with `code`.
pub fn report_failure(code: i32) {
    let fd = READY_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        let _ = sys::write(sys::borrow_raw(fd), &[code.clamp(1, 255) as u8]);
        sys::close_raw(fd);
    }
}

/// Moves our own descriptors (the readiness descriptor, held ones) off
/// `fd`, for a tool about to put something else on that number
/// (`skd-bind -a` on 3). A moved held descriptor keeps its lock: flock(2)
/// locks belong to the open file, which the copy shares.
pub fn vacate(fd: RawFd) -> std::io::Result<()> {
    let away = || sys::dup_at_least(sys::borrow_raw(fd), fd + 1).map(IntoRawFd::into_raw_fd);
    if ready_fd() == Some(fd) {
        READY_FD.store(away()?, Ordering::Relaxed);
        sys::close_raw(fd);
    }
    let mut held = held();
    if let Some(slot) = held.iter_mut().find(|h| **h == fd) {
        *slot = away()?;
        sys::close_raw(fd);
    }
    Ok(())
}

/// The tool an argv[0] names, if it names one of ours.
pub fn tool_name(program: &OsStr) -> Option<&'static str> {
    let base = Path::new(program).file_name()?;
    TOOLS.iter().copied().find(|t| OsStr::new(t) == base)
}

/// Where to find tool `name` given only as a bare name: beside the running
/// executable (the same build, and no $PATH needed from a fresh
/// `cargo build`), else the running executable itself when it is the
/// multicall `skd`. `None`: search $PATH.
pub fn locate_tool(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let sibling = exe.with_file_name(name);
    if sibling.is_file() {
        return Some(sibling);
    }
    (exe.file_name()? == "skd").then_some(exe)
}

fn c_string(s: &OsStr) -> Option<CString> {
    CString::new(s.as_bytes()).ok()
}

/// Ends a tool's step: execs `argv` (argv[0] searched in $PATH, or found
/// beside us when it is one of our tools) with `env`. The readiness
/// descriptor goes along only to an skd tool; the held descriptors always
/// stay open, announced only to an skd tool. Returns only on failure, with
/// the error to die of.
pub fn exec(argv: &[OsString], mut env: Env) -> Error {
    let program = &argv[0];
    let tool = tool_name(program);
    if tool.is_some()
        && let Some(fd) = ready_fd()
    {
        let _ = sys::set_cloexec(sys::borrow_raw(fd), false);
        env.set(READY_VAR, fd.to_string());
    }
    let held = held_fds();
    for &fd in &held {
        let _ = sys::set_cloexec(sys::borrow_raw(fd), false);
    }
    if tool.is_some() && !held.is_empty() {
        let list: Vec<String> = held.iter().map(RawFd::to_string).collect();
        env.set(HELD_VAR, list.join(","));
    }
    let located = match tool {
        Some(name) if !program.as_bytes().contains(&b'/') => locate_tool(name),
        _ => None,
    };
    let Some(c_argv) = argv.iter().map(|a| c_string(a)).collect::<Option<Vec<_>>>() else {
        return Error::usage("an argument contains a NUL byte");
    };
    let c_argv = sys::CArgs::new(c_argv);
    let c_env = sys::CArgs::new(env.to_c());
    let err = match located {
        Some(path) => match c_string(path.as_os_str()) {
            Some(path) => sys::execve(&path, &c_argv, &c_env),
            None => return Error::usage("an argument contains a NUL byte"),
        },
        None => match c_string(program) {
            Some(path) => sys::execvpe(&path, &c_argv, &c_env),
            None => return Error::usage("an argument contains a NUL byte"),
        },
    };
    Error::exec(program.to_string_lossy(), &err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_match_on_the_base_name_only() {
        assert_eq!(tool_name(OsStr::new("skd-accept")), Some("skd-accept"));
        assert_eq!(tool_name(OsStr::new("/usr/bin/skd-bind")), Some("skd-bind"));
        assert_eq!(tool_name(OsStr::new("skd-acceptx")), None);
        assert_eq!(tool_name(OsStr::new("cat")), None);
    }

    #[test]
    fn env_set_replaces_and_remove_takes() {
        let mut env = Env::default();
        env.set("A", "1");
        env.set("A", "2");
        assert_eq!(env.get("A"), Some(OsStr::new("2")));
        assert_eq!(env.remove("A"), Some(OsString::from("2")));
        assert_eq!(env.get("A"), None);
    }

    #[test]
    fn readiness_fd_must_be_a_plain_number_above_stderr() {
        assert_eq!(parse_fd(OsStr::new("7")), Some(7));
        assert_eq!(parse_fd(OsStr::new("2")), None);
        assert_eq!(parse_fd(OsStr::new("x")), None);
        assert_eq!(parse_fd(OsStr::new("-4")), None);
    }

    #[test]
    fn held_descriptors_are_a_comma_separated_list() {
        assert_eq!(parse_fd_list(OsStr::new("5")), [5]);
        assert_eq!(parse_fd_list(OsStr::new("9,5")), [5, 9]);
        assert_eq!(parse_fd_list(OsStr::new("5,5")), [5]);
        assert_eq!(parse_fd_list(OsStr::new("1,x,,7")), [7]);
        assert!(parse_fd_list(OsStr::new("")).is_empty());
    }
}
