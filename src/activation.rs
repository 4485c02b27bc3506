//! systemd socket activation, the `LISTEN_FDS` protocol (sd_listen_fds(3)),
//! both ways.
//!
//! In: a serving tool run directly by a service manager with `Accept=no`
//! finds its listening socket on fd 3 instead of fd 0, announced by
//! `LISTEN_FDS=1` and `LISTEN_PID` (the pid it was meant for). Our own
//! convention comes first: when fd 0 is a socket, it is served, whatever
//! the variables say.
//!
//! Out: `skd-bind -a` hands its socket on the same way to programs written
//! for socket activation. `LISTEN_PID` is our pid, which exec keeps.

use std::ffi::OsStr;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use crate::chain::Env;
use crate::error::Error;
use crate::sys;

/// Where the protocol puts the first socket (`SD_LISTEN_FDS_START`).
pub const FIRST_FD: RawFd = 3;

/// The protocol's variables. They describe descriptors of one process and
/// must never reach another: the serving tools remove them from the
/// environment of every handler.
pub const VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// The socket a serving tool is to serve, and how to name it in messages.
#[derive(Clone, Copy, Debug)]
pub struct Listener {
    pub fd: BorrowedFd<'static>,
    /// "stdin", or "fd 3 (LISTEN_FDS)".
    pub name: &'static str,
}

/// Finds the socket to serve: fd 0 when it is a socket (the UCSPI and s6
/// convention); otherwise fd 3 when `LISTEN_PID` is our pid and
/// `LISTEN_FDS` is 1; otherwise fd 0 again, for the caller to reject.
/// The protocol's variables are removed from `env` in every case; a socket
/// passed on fd 3 that we do not serve is made close-on-exec, so that
/// handlers never inherit it (the one we serve, `serve::prepare` makes so).
pub fn listener(env: &mut Env) -> Result<Listener, Error> {
    let [pid, fds, _names] = VARS.map(|name| env.remove(name));
    let stdin = Listener {
        fd: sys::borrow_raw(0),
        name: "stdin",
    };
    if !for_us(pid.as_deref(), sys::getpid()) {
        return Ok(stdin);
    }
    let passed = sys::is_open(FIRST_FD).then(|| sys::borrow_raw(FIRST_FD));
    if is_socket(stdin.fd) {
        // The service manager's socket is not the one we serve, but it is
        // ours to keep from the handlers (systemd passes it inheritable).
        if let Some(fd) = passed {
            sys::set_cloexec(fd, true).map_err(|e| Error::sys("set close-on-exec on fd 3", &e))?;
        }
        return Ok(stdin);
    }
    check_count(fds.as_deref())?;
    let Some(fd) = passed else {
        return Err(Error::usage(
            "LISTEN_FDS=1 and LISTEN_PID is ours, but fd 3 is not open",
        ));
    };
    Ok(Listener {
        fd,
        name: "fd 3 (LISTEN_FDS)",
    })
}

fn is_socket(fd: BorrowedFd) -> bool {
    sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).is_ok()
}

/// Whether `LISTEN_PID` names `pid` (a value that is not a plain decimal
/// pid names nobody, as sd_listen_fds(3) reads it).
fn for_us(value: Option<&OsStr>, pid: i32) -> bool {
    value
        .and_then(OsStr::to_str)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<i32>().ok())
        == Some(pid)
}

/// We serve one socket: `LISTEN_FDS` must be exactly 1.
fn check_count(value: Option<&OsStr>) -> Result<(), Error> {
    match value {
        Some(v) if v == "1" => Ok(()),
        Some(v) => Err(Error::usage(format!(
            "unsupported LISTEN_FDS=\"{}\": exactly one socket (fd 3) can be served",
            v.to_string_lossy()
        ))),
        None => Err(Error::usage("LISTEN_PID is ours but LISTEN_FDS is not set")),
    }
}

/// Hands `socket` on the systemd way: on fd 3 (not close-on-exec there),
/// with `LISTEN_FDS=1` and `LISTEN_PID` set to our pid in `env`, which the
/// next program keeps across exec. `LISTEN_FDNAMES` is removed: a stale
/// value would name descriptors we do not pass, and without it
/// sd_listen_fds_with_names(3) reports the name "unknown". Fd 0 is left
/// alone.
pub fn hand_off(socket: OwnedFd, env: &mut Env) -> Result<(), Error> {
    sys::move_to(socket, FIRST_FD).map_err(|e| Error::sys("move the socket to fd 3", &e))?;
    env.set("LISTEN_FDS", "1");
    env.set("LISTEN_PID", sys::getpid().to_string());
    env.remove("LISTEN_FDNAMES");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn listen_pid_must_be_exactly_ours() {
        assert!(for_us(os("1234"), 1234));
        assert!(!for_us(os("1235"), 1234));
        assert!(!for_us(os(""), 1234));
        assert!(!for_us(os("+1234"), 1234));
        assert!(!for_us(os(" 1234"), 1234));
        assert!(!for_us(None, 1234));
    }

    #[test]
    fn only_one_socket_is_supported() {
        assert_eq!(check_count(os("1")), Ok(()));
        for bad in ["0", "2", "01", "x", ""] {
            let err = check_count(os(bad)).unwrap_err();
            assert_eq!(err.code, 100, "{bad}");
            assert!(err.msg.contains("exactly one socket"), "{}", err.msg);
        }
        assert_eq!(check_count(None).unwrap_err().code, 100);
    }
}
