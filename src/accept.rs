//! skd-accept: accept connections on the listening stream socket at fd 0
//! (or on fd 3 under systemd socket activation) and run a handler for each,
//! with stdin and stdout on the connection.

use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use lexopt::Arg::{Short, Value};

use crate::chain::{self, Env};
use crate::error::{self, Error};
use crate::handler::Handler;
use crate::{activation, args, notify, serve, sys};

pub const PROG: &str = "skd-accept";
pub const SYNOPSIS: &str = "skd-accept [-c maxclients] [-n] [-v] [-d notif] prog...";

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// At most this many handlers at once (`usize::MAX`: no limit).
    pub max: usize,
    pub nodelay: bool,
    pub verbose: bool,
    /// The s6 notification descriptor: "\n" is written to it once serving.
    pub notify: Option<RawFd>,
    pub argv: Vec<OsString>,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut opts = Options {
        max: usize::MAX,
        nodelay: false,
        verbose: false,
        notify: None,
        argv: Vec::new(),
    };
    let syntax = |e| args::syntax(e, SYNOPSIS);
    while let Some(arg) = parser.next().map_err(syntax)? {
        match arg {
            Short('c') => {
                let value = parser.value().map_err(syntax)?;
                opts.max = args::number('c', &value, 1, i32::MAX as u64)? as usize;
            }
            Short('n') => opts.nodelay = true,
            Short('v') => opts.verbose = true,
            Short('d') => {
                let value = parser.value().map_err(syntax)?;
                opts.notify = Some(notify::parse_fd('d', &value)?);
            }
            Value(first) => {
                opts.argv = args::program(first, &mut parser);
                return Ok(opts);
            }
            other => return Err(syntax(other.unexpected())),
        }
    }
    Err(args::missing_program(SYNOPSIS))
}

pub fn main() -> ! {
    error::run(PROG, || {
        let mut env = chain::start();
        let opts = parse(std::env::args_os().skip(1))?;
        let (listener, family) = serve::find_socket(&mut env, opts.notify, check_listener)?;
        let notify_fd = opts.notify;
        let mut server = Server::new(listener, family, opts, env)?;
        serve::now_serving(notify_fd)?;
        server.run()
    })
}

/// Checks that the socket found is a listening stream socket; returns its
/// family.
pub fn check_listener(listener: activation::Listener) -> Result<i32, Error> {
    let (fd, name) = (listener.fd, listener.name);
    let not = || Error::usage(format!("{name} is not a listening stream socket"));
    let socktype = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).map_err(|_| not())?;
    let listening =
        sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).map_err(|_| not())?;
    if socktype != libc::SOCK_STREAM || listening == 0 {
        return Err(not());
    }
    let family = sys::getsockname(fd)
        .map_err(|e| Error::sys("read the socket's address", &e))?
        .family();
    match family {
        libc::AF_INET | libc::AF_INET6 | libc::AF_UNIX => Ok(family),
        _ => Err(Error::usage(format!(
            "{name} is not an internet or unix socket"
        ))),
    }
}

/// How a connection is described to its handler.
enum Kind {
    /// TCP; `local` is known in advance unless the listener is bound to a
    /// wildcard address.
    Tcp {
        local: Option<SocketAddr>,
    },
    Unix,
}

struct Server {
    listener: BorrowedFd<'static>,
    kind: Kind,
    handler: Handler,
    signals: OwnedFd,
    /// The handlers running now: only children we spawned count (a logger
    /// started earlier in the chain is our child too).
    children: HashSet<i32>,
    max: usize,
    nodelay: bool,
    verbose: bool,
    /// Set while accept or spawn fails for want of descriptors, memory
    /// or processes: the listener is left alone until then, or until a
    /// handler exits (which may end the shortage), instead of spinning on
    /// a queue we cannot serve. Waiting clients stay in the backlog.
    paused_until: Option<Instant>,
    /// Consecutive failures for want of resources, in accept and in
    /// spawn: the first of an episode is reported as a warning, the rest
    /// only counted, and the first success after them ends the episode
    /// with an info line. A flood cannot flood the log.
    accept_failures: u64,
    spawn_failures: u64,
}

/// How long a shortage pauses accepting, unless a handler exits first.
const PAUSE: Duration = Duration::from_secs(1);

impl Server {
    fn new(
        listener: BorrowedFd<'static>,
        family: i32,
        opts: Options,
        mut env: Env,
    ) -> Result<Server, Error> {
        let signals = serve::prepare(listener, &mut env)?;
        // Another holder of the socket (a second server, a prefork
        // sibling) may take the connection that woke our poll before our
        // accept: a blocking accept would then wait, deaf to signals, for
        // the next client. Non-blocking, it fails with EAGAIN and we poll
        // again. Handlers never see the listener; another holder shares
        // the flag (it is the open file description's), and as a sharer it
        // must already expect EAGAIN from accept.
        sys::set_nonblocking(listener, true)
            .map_err(|e| Error::sys("make the socket non-blocking", &e))?;
        let kind = if family == libc::AF_UNIX {
            env.set("PROTO", "UNIX-STREAM");
            Kind::Unix
        } else {
            env.set("PROTO", "TCP");
            let local = sys::getsockname(listener).ok().and_then(|a| a.to_inet());
            Kind::Tcp {
                local: local.filter(|a| !a.ip().is_unspecified()),
            }
        };
        let handler = Handler::new(&opts.argv, &env, &serve::HANDLED)?;
        let mut server = Server {
            listener,
            kind,
            handler,
            signals,
            children: HashSet::new(),
            max: opts.max,
            nodelay: opts.nodelay,
            verbose: opts.verbose,
            paused_until: None,
            accept_failures: 0,
            spawn_failures: 0,
        };
        // Children that ended before we watched for SIGCHLD.
        server.reap();
        Ok(server)
    }

    fn run(&mut self) -> Result<std::convert::Infallible, Error> {
        loop {
            // The pause ends on time however many signals arrive meanwhile.
            if self.paused_until.is_some_and(|t| Instant::now() >= t) {
                self.paused_until = None;
            }
            let accepting = self.children.len() < self.max && self.paused_until.is_none();
            let mut fds = [
                serve::pollfd(self.signals.as_raw_fd(), libc::POLLIN),
                serve::pollfd(
                    if accepting {
                        self.listener.as_raw_fd()
                    } else {
                        -1
                    },
                    libc::POLLIN,
                ),
            ];
            let timeout = self.paused_until.map_or(-1, serve::ms_until);
            sys::poll(&mut fds, timeout).map_err(|e| Error::sys("poll", &e))?;
            if fds[0].revents != 0 {
                self.handle_signals()?;
            }
            if fds[1].revents != 0 {
                self.accept_one()?;
            }
        }
    }

    fn handle_signals(&mut self) -> Result<(), Error> {
        if serve::drain_signals(self.signals.as_fd())? {
            self.reap();
        }
        Ok(())
    }

    fn reap(&mut self) {
        while let Ok(Some((pid, exit))) = sys::try_wait(-1) {
            if !self.children.remove(&pid) {
                continue;
            }
            if let Some(e) = self.handler.exec_error(pid) {
                // A missing or unusable program: one line per connection,
                // as tcpserver and s6 do (the rate is the clients' rate).
                // No pause: the process was started, so no shortage.
                let name = self.handler.name();
                let why = error::describe(&e);
                error::warn(PROG, &format!("unable to spawn {name}: {why}"));
            }
            // A process slot (and maybe descriptors, system-wide) is free:
            // end any pause at once rather than on the timer.
            self.paused_until = None;
            if self.verbose {
                let how = serve::exit_text(exit);
                error::info(PROG, &format!("handler pid {pid} {how}, {}", self.count()));
            }
        }
    }

    fn count(&self) -> String {
        match self.max {
            usize::MAX => format!("{} running", self.children.len()),
            max => format!("{}/{max} running", self.children.len()),
        }
    }

    fn accept_one(&mut self) -> Result<(), Error> {
        match sys::accept(self.listener) {
            Ok((conn, peer)) => {
                if self.accept_failures > 0 {
                    self.accept_failures = 0;
                    error::info(PROG, "accepting again");
                }
                self.start_handler(conn, peer);
                Ok(())
            }
            Err(e) => self.accept_failed(e),
        }
    }

    fn accept_failed(&mut self, e: io::Error) -> Result<(), Error> {
        match e.raw_os_error().unwrap_or(0) {
            // Out of descriptors or memory: pause (until a handler exits or
            // a second passes) instead of spinning on a queue we cannot take.
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                if self.accept_failures == 0 {
                    error::warn(
                        PROG,
                        &format!("unable to accept: {} (pausing)", error::describe(&e)),
                    );
                }
                self.accept_failures += 1;
                self.paused_until = Some(Instant::now() + PAUSE);
                Ok(())
            }
            // The connection died before we took it, or a transient network
            // error that accept(2) reports for the new socket: carry on.
            libc::EAGAIN
            | libc::EINTR
            | libc::ECONNABORTED
            | libc::EPROTO
            | libc::EPERM
            | libc::ENETDOWN
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH
            | libc::ETIMEDOUT => Ok(()),
            _ => Err(Error::sys("accept", &e)),
        }
    }

    fn start_handler(&mut self, conn: OwnedFd, peer: sys::RawAddr) {
        let mut vars = Vec::with_capacity(4);
        let mut from = String::new();
        match &self.kind {
            Kind::Tcp { local } => {
                if self.nodelay {
                    // Best effort: the connection is still worth serving.
                    let _ =
                        sys::setsockopt_int(conn.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
                }
                let local = local.or_else(|| sys::getsockname(conn.as_fd()).ok()?.to_inet());
                if let Some(local) = local {
                    push_ip_vars(&mut vars, ["TCPLOCALIP", "TCPLOCALPORT"], &local);
                }
                if let Some(remote) = peer.to_inet() {
                    push_ip_vars(&mut vars, ["TCPREMOTEIP", "TCPREMOTEPORT"], &remote);
                    if self.verbose {
                        let ip = sys::unmapped(remote.ip());
                        let _ = write!(from, "connection from [{ip}]:{}", remote.port());
                    }
                }
            }
            Kind::Unix => match sys::peer_cred(conn.as_fd()) {
                Ok((pid, uid, gid)) => {
                    vars.push(var("PEERPID", pid));
                    vars.push(var("PEERUID", uid));
                    vars.push(var("PEERGID", gid));
                    if self.verbose {
                        let _ = write!(
                            from,
                            "local connection from pid {pid} (uid {uid}, gid {gid})"
                        );
                    }
                }
                Err(_) => from.push_str("local connection"),
            },
        }
        match self.handler.start(conn.as_raw_fd(), vars) {
            Ok(pid) => {
                self.children.insert(pid);
                if self.spawn_failures > 0 {
                    let dropped = std::mem::take(&mut self.spawn_failures);
                    error::info(
                        PROG,
                        &format!("spawning again, {dropped} connections were dropped"),
                    );
                }
                if self.verbose {
                    error::info(
                        PROG,
                        &format!("accepted {from}, handler pid {pid}, {}", self.count()),
                    );
                }
            }
            Err(e) => self.spawn_failed(&e),
        }
        // `conn` is closed here: the handler has its own copies (or, if
        // none could be started, the client sees the connection close).
    }

    fn spawn_failed(&mut self, e: &io::Error) {
        let what = format!(
            "unable to spawn {}: {}",
            self.handler.name(),
            error::describe(e)
        );
        match e.raw_os_error() {
            // Out of processes (RLIMIT_NPROC, pid_max) or memory: a
            // shortage like accept's. This connection is dropped; pausing
            // keeps the next ones waiting in the backlog until a handler
            // exits, instead of dropping them one after another.
            Some(libc::EAGAIN | libc::ENOMEM) => {
                if self.spawn_failures == 0 {
                    error::warn(PROG, &format!("{what} (dropping the connection, pausing)"));
                }
                self.spawn_failures += 1;
                self.paused_until = Some(Instant::now() + PAUSE);
            }
            // Anything else from clone: this connection only.
            _ => error::warn(PROG, &what),
        }
    }
}

/// `NAME=value` in one allocation (this runs for every connection).
fn var(name: &str, value: impl std::fmt::Display) -> CString {
    let mut entry = String::with_capacity(64);
    let _ = write!(entry, "{name}={value}");
    CString::new(entry).expect("no NUL in a name or a number")
}

fn push_ip_vars(vars: &mut Vec<CString>, names: [&str; 2], addr: &SocketAddr) {
    vars.push(var(names[0], sys::unmapped(addr.ip())));
    vars.push(var(names[1], addr.port()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Options, Error> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn options() {
        let o = parse_str(&["-c", "5", "-nv", "cat"]).unwrap();
        assert_eq!((o.max, o.nodelay, o.verbose), (5, true, true));
        let o = parse_str(&["cat"]).unwrap();
        assert_eq!(o.max, usize::MAX);
        let o = parse_str(&["sh", "-c", "echo"]).unwrap();
        assert_eq!(o.argv, ["sh", "-c", "echo"]);
        assert_eq!(o.notify, None);
        let o = parse_str(&["-d", "3", "-v", "cat"]).unwrap();
        assert_eq!((o.notify, o.verbose), (Some(3), true));
        let o = parse_str(&["-d7", "cat"]).unwrap();
        assert_eq!(o.notify, Some(7));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &[][..],
            &["-c"],
            &["-c", "0", "cat"],
            &["-c", "-1", "cat"],
            &["-x", "cat"],
            &["-d", "cat"],
            &["-d", "0", "cat"],
            &["-d", "1", "cat"],
            &["-d", "2", "cat"],
            &["-d", "fd", "cat"],
        ] {
            assert_eq!(parse_str(bad).unwrap_err().code, 100, "{bad:?}");
        }
    }
}
