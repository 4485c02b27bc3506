//! skd-dgram: serve the bound datagram socket at fd 0 the inetd "wait" way.
//! When a datagram is queued (we look, we never take), run one handler with
//! stdin and stdout on the socket itself, and wait for it to exit before
//! looking again. The handler reads the datagram that woke us, and any
//! others it wants.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use lexopt::Arg::{Short, Value};

use crate::chain::{self, Env};
use crate::error::{self, Error};
use crate::handler::Handler;
use crate::{activation, args, notify, serve, sys};

pub const PROG: &str = "skd-dgram";
pub const SYNOPSIS: &str = "skd-dgram [-v] [-d notif] prog...";

/// The first pause after a handler leaves its datagram unread; each further
/// one in a row doubles it, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long to pause after the socket reports an error we do not expect.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// How much of the next datagram we look at to tell it from another one
/// (a UDP datagram carries at most 65507 bytes).
const PEEK_SIZE: usize = 65536;

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub verbose: bool,
    /// The s6 notification descriptor: "\n" is written to it once serving.
    pub notify: Option<RawFd>,
    pub argv: Vec<OsString>,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut verbose = false;
    let mut notify = None;
    let syntax = |e| args::syntax(e, SYNOPSIS);
    while let Some(arg) = parser.next().map_err(syntax)? {
        match arg {
            Short('v') => verbose = true,
            Short('d') => {
                let value = parser.value().map_err(syntax)?;
                notify = Some(notify::parse_fd('d', &value)?);
            }
            Value(first) => {
                return Ok(Options {
                    verbose,
                    notify,
                    argv: args::program(first, &mut parser),
                });
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
        let (socket, family) = serve::find_socket(&mut env, opts.notify, check_socket)?;
        let notify_fd = opts.notify;
        let mut server = Server::new(socket, family, opts, env)?;
        serve::now_serving(notify_fd)?;
        server.run()
    })
}

/// Checks that the socket found is an internet or unix datagram socket
/// bound to an address; returns its family.
pub fn check_socket(listener: activation::Listener) -> Result<i32, Error> {
    let (fd, name) = (listener.fd, listener.name);
    let not = || Error::usage(format!("{name} is not a datagram socket"));
    let socktype = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).map_err(|_| not())?;
    if socktype != libc::SOCK_DGRAM {
        return Err(not());
    }
    let local = sys::getsockname(fd).map_err(|e| Error::sys("read the socket's address", &e))?;
    let bound = match local.family() {
        libc::AF_INET | libc::AF_INET6 => local.to_inet().is_some_and(|a| a.port() != 0),
        libc::AF_UNIX => !local.unix_name().is_empty(),
        _ => {
            return Err(Error::usage(format!(
                "{name} is not an internet or unix socket"
            )));
        }
    };
    if !bound {
        return Err(Error::usage(format!(
            "{name} is a datagram socket but is not bound to an address"
        )));
    }
    Ok(local.family())
}

/// Who sent a datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sender {
    Inet(SocketAddr),
    /// A unix socket's name: a path, an abstract name (leading NUL), or
    /// empty for an unnamed socket, the usual case.
    Local(Vec<u8>),
}

impl Sender {
    /// "datagram from [127.0.0.1]:5555", "local datagram from /run/c.sock",
    /// "local datagram".
    fn describe(&self) -> String {
        match self {
            Sender::Inet(addr) => {
                format!(
                    "datagram from [{}]:{}",
                    sys::unmapped(addr.ip()),
                    addr.port()
                )
            }
            Sender::Local(name) if name.is_empty() => "local datagram".into(),
            Sender::Local(name) => {
                let shown = match name.split_first() {
                    Some((0, abstract_name)) => {
                        format!("@{}", String::from_utf8_lossy(abstract_name))
                    }
                    _ => String::from_utf8_lossy(name).into_owned(),
                };
                format!("local datagram from {shown}")
            }
        }
    }
}

/// The datagram at the head of the queue, as closely as we can identify it
/// without taking it: its sender, its length and (the start of) its bytes.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    sender: Sender,
    len: usize,
    data: Vec<u8>,
}

enum State {
    /// Waiting for a datagram to be queued.
    Idle,
    /// A handler runs; `head` is the datagram that woke us for it.
    Running { pid: i32, head: Head },
    /// Backing off: no handler is started before `until`.
    Pausing { until: Instant },
}

struct Server {
    /// A close-on-exec duplicate of fd 0: the socket handlers get on their
    /// own 0 and 1. Spawning from a descriptor above 2 makes both moves
    /// real dup2s, which clear close-on-exec on the targets, whatever the
    /// C library does with a dup2 of a descriptor onto itself.
    socket: OwnedFd,
    local: bool,
    handler: Handler,
    signals: OwnedFd,
    verbose: bool,
    state: State,
    /// While handlers leave the datagram at the head unread: the pause
    /// taken after the last one. `None` outside such an episode.
    backoff: Option<Duration>,
    buf: Vec<u8>,
}

impl Server {
    fn new(
        stdin: BorrowedFd<'static>,
        family: i32,
        opts: Options,
        mut env: Env,
    ) -> Result<Server, Error> {
        let socket =
            sys::dup_at_least(stdin, 3).map_err(|e| Error::sys("duplicate the socket", &e))?;
        // Handlers get the socket through the duplicate, not fd 0 itself.
        let signals = serve::prepare(stdin, &mut env)?;
        let local = family == libc::AF_UNIX;
        env.set("PROTO", if local { "UNIX-DGRAM" } else { "UDP" });
        let handler = Handler::new(&opts.argv, &env, &serve::HANDLED)?;
        let mut server = Server {
            socket,
            local,
            handler,
            signals,
            verbose: opts.verbose,
            state: State::Idle,
            backoff: None,
            buf: vec![0; PEEK_SIZE],
        };
        // Children that ended before we watched for SIGCHLD.
        server.reap();
        Ok(server)
    }

    fn run(&mut self) -> Result<std::convert::Infallible, Error> {
        loop {
            let (watch, timeout) = match &self.state {
                State::Idle => (self.socket.as_raw_fd(), -1),
                State::Running { .. } => (-1, -1),
                State::Pausing { until } => (-1, serve::ms_until(*until)),
            };
            let mut fds = [
                serve::pollfd(self.signals.as_raw_fd(), libc::POLLIN),
                serve::pollfd(watch, libc::POLLIN | libc::POLLRDHUP),
            ];
            sys::poll(&mut fds, timeout).map_err(|e| Error::sys("poll", &e))?;
            if fds[0].revents != 0 {
                self.handle_signals()?;
            }
            // A handler shut the socket down for reading: poll now reports
            // it readable for ever, and a unix socket refuses every sender.
            // Nothing short of a new socket can serve again.
            if fds[1].revents & libc::POLLRDHUP != 0 {
                return Err(Error::new(
                    error::SYSTEM,
                    "unable to wait for datagrams: the socket was shut down for reading",
                ));
            }
            if let State::Pausing { until } = self.state
                && Instant::now() >= until
            {
                self.state = State::Idle;
            }
            // Any event on the socket (readable, or an error to collect)
            // is looked at by peeking.
            if fds[1].revents != 0 && matches!(self.state, State::Idle) {
                self.serve()?;
            }
        }
    }

    fn handle_signals(&mut self) -> Result<(), Error> {
        if serve::drain_signals(self.signals.as_fd())? {
            self.reap();
        }
        Ok(())
    }

    /// Reaps every exited child; only the handler we started counts (a
    /// logger started earlier in the chain is our child too).
    fn reap(&mut self) {
        while let Ok(Some((pid, exit))) = sys::try_wait(-1) {
            if matches!(self.state, State::Running { pid: ours, .. } if ours == pid) {
                let State::Running { head, .. } = std::mem::replace(&mut self.state, State::Idle)
                else {
                    unreachable!("checked just above")
                };
                self.handler_exited(pid, exit, head);
            }
        }
    }

    fn handler_exited(&mut self, pid: i32, exit: sys::Exit, head: Head) {
        let how = serve::exit_text(exit);
        if self.verbose {
            error::info(PROG, &format!("handler pid {pid} {how}"));
        }
        match self.peek() {
            Ok(Some(now)) if now == head => {
                self.unread(&format!(
                    "handler pid {pid} {how} and left its datagram unread"
                ));
            }
            // Read, or gone: the episode, if any, is over. An error is
            // collected when we next look at the socket.
            _ => self.backoff = None,
        }
    }

    /// The datagram at the head of the queue was not taken: pause before
    /// the next handler, longer each time in a row, so that a handler that
    /// cannot read it makes us neither spin nor give up on it. Warns once
    /// per episode.
    fn unread(&mut self, why: &str) {
        if self.backoff.is_none() {
            error::warn(PROG, &format!("{why}; backing off"));
        }
        let delay = next_backoff(self.backoff);
        self.backoff = Some(delay);
        self.state = State::Pausing {
            until: Instant::now() + delay,
        };
    }

    /// The head of the queue, left in place; `None` when the queue is empty.
    fn peek(&mut self) -> io::Result<Option<Head>> {
        let (len, from) = match sys::peek_from(self.socket.as_fd(), &mut self.buf) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        let sender = match from.to_inet() {
            Some(addr) if !self.local => Sender::Inet(addr),
            _ => Sender::Local(from.unix_name()),
        };
        Ok(Some(Head {
            sender,
            len,
            data: self.buf[..len.min(self.buf.len())].to_vec(),
        }))
    }

    /// A datagram may be queued: start a handler for it.
    fn serve(&mut self) -> Result<(), Error> {
        let head = match self.peek() {
            Ok(Some(head)) => head,
            // A false alarm (such as a UDP datagram with a bad checksum,
            // dropped as we looked).
            Ok(None) => return Ok(()),
            // Nothing we can do about it but not spin on it.
            Err(e) => {
                error::warn(
                    PROG,
                    &format!(
                        "unable to peek at the next datagram: {} (pausing)",
                        error::describe(&e)
                    ),
                );
                self.state = State::Pausing {
                    until: Instant::now() + ERROR_PAUSE,
                };
                return Ok(());
            }
        };
        // Whatever an earlier handler did to the socket's flags, the next
        // one gets it blocking, as a program reading its stdin expects.
        sys::set_nonblocking(self.socket.as_fd(), false)
            .map_err(|e| Error::sys("put the socket in blocking mode", &e))?;
        match self.handler.spawn(self.socket.as_raw_fd(), Vec::new()) {
            Ok(pid) => {
                if self.verbose {
                    error::info(
                        PROG,
                        &format!(
                            "received initial {}, handler pid {pid}",
                            head.sender.describe()
                        ),
                    );
                }
                self.state = State::Running { pid, head };
            }
            Err(e) => self.unread(&format!(
                "unable to spawn {}: {}",
                self.handler.name(),
                error::describe(&e)
            )),
        }
        Ok(())
    }
}

/// The pause after `last` (none: the first of an episode).
fn next_backoff(last: Option<Duration>) -> Duration {
    match last {
        None => FIRST_BACKOFF,
        Some(last) => (last * 2).min(MAX_BACKOFF),
    }
}

/// Milliseconds from now until `until`, rounded up, for poll.
#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Options, Error> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn options() {
        let o = parse_str(&["-v", "prog"]).unwrap();
        assert!(o.verbose);
        assert_eq!(o.argv, ["prog"]);
        let o = parse_str(&["sh", "-c", "-v"]).unwrap();
        assert!(!o.verbose);
        assert_eq!(o.argv, ["sh", "-c", "-v"]);
        let o = parse_str(&["--", "-prog"]).unwrap();
        assert_eq!(o.argv, ["-prog"]);
        assert_eq!(o.notify, None);
        let o = parse_str(&["-v", "-d", "4", "prog"]).unwrap();
        assert_eq!((o.verbose, o.notify), (true, Some(4)));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &[][..],
            &["-v"],
            &["-c", "3", "prog"],
            &["--verbose", "prog"],
            &["-d", "prog"],
            &["-d", "2", "prog"],
            &["-d", "x", "prog"],
        ] {
            assert_eq!(parse_str(bad).unwrap_err().code, 100, "{bad:?}");
        }
    }

    #[test]
    fn senders_are_described_as_in_the_log() {
        let v4 = Sender::Inet("127.0.0.1:5555".parse().unwrap());
        assert_eq!(v4.describe(), "datagram from [127.0.0.1]:5555");
        let mapped = Sender::Inet("[::ffff:10.0.0.1]:53".parse().unwrap());
        assert_eq!(mapped.describe(), "datagram from [10.0.0.1]:53");
        let v6 = Sender::Inet("[::1]:53".parse().unwrap());
        assert_eq!(v6.describe(), "datagram from [::1]:53");
        assert_eq!(Sender::Local(vec![]).describe(), "local datagram");
        assert_eq!(
            Sender::Local(b"/run/c.sock".to_vec()).describe(),
            "local datagram from /run/c.sock"
        );
        assert_eq!(
            Sender::Local(b"\0client".to_vec()).describe(),
            "local datagram from @client"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut steps = vec![next_backoff(None)];
        for _ in 0..7 {
            steps.push(next_backoff(steps.last().copied()));
        }
        let ms: Vec<u128> = steps.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
