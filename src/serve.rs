//! What the two servers, skd-accept and skd-dgram, share: finding the
//! socket, preparing the process to serve it, declaring readiness, and the
//! signals that stop the server or report a handler's end.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Instant;

use crate::activation::{self, Listener};
use crate::chain::{self, Env};
use crate::error::Error;
use crate::{notify, sys};

/// Variables that describe a connection or a peer, as a server earlier in
/// the environment may have set them, and the ones a tcpserver would set
/// that we never do (no DNS or ident lookup): all are removed, so that no
/// stale value reaches a handler.
const CONNECTION_VARS: &[&str] = &[
    "PROTO",
    "TCPLOCALIP",
    "TCPLOCALPORT",
    "TCPLOCALHOST",
    "TCPREMOTEIP",
    "TCPREMOTEPORT",
    "TCPREMOTEHOST",
    "TCPREMOTEINFO",
    "PEERPID",
    "PEERUID",
    "PEERGID",
];

/// The signals a server takes through its signalfd; handlers get them back
/// at their defaults.
pub const HANDLED: [i32; 3] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT];

/// Finds the socket to serve (fd 0, or fd 3 under socket activation) and
/// checks it with `check`, which returns its address family.
pub fn find_socket(
    env: &mut Env,
    notify_fd: Option<RawFd>,
    check: impl FnOnce(Listener) -> Result<i32, Error>,
) -> Result<(BorrowedFd<'static>, i32), Error> {
    let listener = activation::listener(env)?;
    if let Some(fd) = notify_fd {
        if fd == listener.fd.as_raw_fd() {
            return Err(Error::usage(format!(
                "the notification fd is {}, the socket to serve",
                listener.name
            )));
        }
        // Writing a newline there would tell skd-background we failed, or
        // scribble on a pidfile and drop its lock.
        if chain::ready_fd() == Some(fd) || chain::held_fds().contains(&fd) {
            return Err(Error::usage(format!(
                "the notification fd {fd} is one the chain itself uses"
            )));
        }
    }
    let fd = listener.fd;
    Ok((fd, check(listener)?))
}

/// Prepares the process to serve `socket`: the socket becomes close-on-exec
/// (handlers get their own copy on fd 0 and 1, never ours), our stdout
/// stops holding the caller's open (so `port=$(skd-background ...)`
/// returns), stale connection variables leave `env`, and the signals of
/// `HANDLED` arrive on the returned signalfd instead of interrupting us.
pub fn prepare(socket: BorrowedFd, env: &mut Env) -> Result<OwnedFd, Error> {
    sys::set_cloexec(socket, true)
        .map_err(|e| Error::sys("set close-on-exec on the socket", &e))?;
    let null = sys::open_dev_null().map_err(|e| Error::sys("open /dev/null", &e))?;
    sys::move_to(null, 1).map_err(|e| Error::sys("redirect stdout to /dev/null", &e))?;
    for name in CONNECTION_VARS {
        env.remove(name);
    }
    signalfd_for(&HANDLED)
}

/// Blocks `signals` and returns a signalfd on which they arrive instead.
pub fn signalfd_for(signals: &[i32]) -> Result<OwnedFd, Error> {
    let set = sys::SigSet::of(signals);
    sys::block_signals(&set).map_err(|e| Error::sys("block signals", &e))?;
    sys::signalfd(&set).map_err(|e| Error::sys("create a signalfd", &e))
}

/// A poll entry; a negative `fd` is skipped by poll(2).
pub fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// The poll(2) timeout, in milliseconds rounded up (waking early would only
/// mean waiting again), until `deadline`.
pub fn ms_until(deadline: Instant) -> i32 {
    let left = deadline.saturating_duration_since(Instant::now());
    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
}

/// Declares the server ready: to a waiting skd-background, and to an s6
/// supervisor through the notification descriptor.
pub fn now_serving(notify_fd: Option<RawFd>) -> Result<(), Error> {
    chain::ready();
    match notify_fd {
        Some(fd) => notify::ready(fd),
        None => Ok(()),
    }
}

/// Reads every pending signal. SIGTERM and SIGINT end the server at once
/// (exit 0); running handlers are left to finish. Returns whether SIGCHLD
/// came, that is whether children are to be reaped.
pub fn drain_signals(signals: BorrowedFd) -> Result<bool, Error> {
    let mut child = false;
    while let Some(sig) = sys::read_signal(signals).map_err(|e| Error::sys("read signals", &e))? {
        match sig {
            libc::SIGTERM | libc::SIGINT => std::process::exit(0),
            _ => child = true,
        }
    }
    Ok(child)
}

/// "exited with status 0", "was killed by signal 9".
pub fn exit_text(exit: sys::Exit) -> String {
    match exit {
        sys::Exit::Code(code) => format!("exited with status {code}"),
        sys::Exit::Signal(sig) => format!("was killed by signal {sig}"),
    }
}
