//! Exit codes and the one-line messages every tool prints:
//! `PROG: fatal: unable to bind to 127.0.0.1 port 80: Address already in use`.

use std::fmt::Display;
use std::io;

use crate::{chain, sys};

/// Wrong usage: a bad option, a bad value, a missing program.
pub const USAGE: i32 = 100;
/// A system call failed.
pub const SYSTEM: i32 = 111;
/// The next program exists but could not be executed.
pub const EXEC_FAILED: i32 = 126;
/// The next program was not found.
pub const NOT_FOUND: i32 = 127;

/// Why a tool gives up: the exit code and the message (without the
/// `PROG: fatal: ` prefix).
#[derive(Debug, PartialEq, Eq)]
pub struct Error {
    pub code: i32,
    pub msg: String,
}

impl Error {
    pub fn new(code: i32, msg: impl Into<String>) -> Error {
        Error {
            code,
            msg: msg.into(),
        }
    }

    /// A usage error (exit 100).
    pub fn usage(msg: impl Into<String>) -> Error {
        Error::new(USAGE, msg)
    }

    /// A failed system call (exit 111): "unable to WHAT: strerror".
    pub fn sys(what: impl Display, err: &io::Error) -> Error {
        Error::new(SYSTEM, format!("unable to {what}: {}", describe(err)))
    }

    /// A failed exec of the next program (exit 126 or 127).
    pub fn exec(program: impl Display, err: &io::Error) -> Error {
        let code = match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => NOT_FOUND,
            _ => EXEC_FAILED,
        };
        Error::new(code, format!("unable to exec {program}: {}", describe(err)))
    }
}

/// The C library's wording for an error ("No such file or directory"),
/// without Rust's "(os error 2)" suffix.
pub fn describe(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(errno) => sys::strerror(errno),
        None => err.to_string(),
    }
}

/// Prints `PROG: KIND: MSG` on stderr in a single write, so that lines from
/// concurrent processes sharing a log never interleave.
pub fn say(prog: &str, kind: &str, msg: &str) {
    // Nothing sensible can be done if stderr is gone.
    let _ = sys::write_all(sys::borrow_raw(2), line(prog, kind, msg).as_bytes());
}

/// The line `say` writes. Messages quote what they were given (an option
/// value, a path, a program name): control characters in it are escaped
/// (`\n`, `\u{1b}`), so that a message is always exactly one line and
/// cannot forge another line in a log or drive a terminal.
pub fn line(prog: &str, kind: &str, msg: &str) -> String {
    let mut line = format!("{prog}: {kind}: ");
    for c in msg.chars() {
        if c.is_control() {
            line.extend(c.escape_debug());
        } else {
            line.push(c);
        }
    }
    line.push('\n');
    line
}

pub fn warn(prog: &str, msg: &str) {
    say(prog, "warning", msg);
}

pub fn info(prog: &str, msg: &str) {
    say(prog, "info", msg);
}

/// Reports `err`, tells a waiting `skd-background` our exit status, and exits.
pub fn die(prog: &str, err: Error) -> ! {
    say(prog, "fatal", &err.msg);
    chain::report_failure(err.code);
    std::process::exit(err.code)
}

/// Runs a tool's body, which returns only on failure.
pub fn run(prog: &str, body: impl FnOnce() -> Result<std::convert::Infallible, Error>) -> ! {
    match body() {
        Ok(never) => match never {},
        Err(err) => die(prog, err),
    }
}
