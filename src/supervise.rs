//! `skd -S`: run a program and start it again whenever it exits, at most
//! about once a second when it keeps failing; pass SIGTERM, SIGINT and
//! SIGHUP on to it, and stop (once it has exited) on SIGTERM and SIGINT.

use std::convert::Infallible;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::chain::{self, Env};
use crate::error::{self, Error};
use crate::handler::Handler;
use crate::{serve, sys};

pub const PROG: &str = "skd";

/// A program that ran for less than this is started again only when this
/// much time has passed since its last start.
pub const MIN_RUN: Duration = Duration::from_secs(1);

/// The signals the supervisor handles; the program gets them at default.
const SIGNALS: [i32; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Supervises `argv` until told to stop. The first start must succeed: a
/// program that cannot be run at all is an error (exit 126 or 127) that a
/// waiting `skd-background` learns of. Later failures to start it are
/// reported and retried.
pub fn run(verbose: bool, argv: &[OsString], env: Env) -> Result<Infallible, Error> {
    let handler = Handler::new(argv, &env, &SIGNALS)?;
    let signals = serve::signalfd_for(&SIGNALS)?;
    let mut sup = Supervisor {
        handler,
        signals,
        verbose,
        child: None,
        last_start: Instant::now(),
        stopping: false,
    };
    sup.start()
        .map_err(|e| Error::exec(sup.handler.name(), &e))?;
    chain::ready();
    sup.supervise()
}

struct Supervisor {
    handler: Handler,
    signals: OwnedFd,
    verbose: bool,
    /// The running program's pid.
    child: Option<i32>,
    last_start: Instant,
    /// SIGTERM or SIGINT came: exit once the program has.
    stopping: bool,
}

impl Supervisor {
    fn start(&mut self) -> std::io::Result<()> {
        self.last_start = Instant::now();
        let pid = self.handler.spawn_inheriting()?;
        self.child = Some(pid);
        if self.verbose {
            error::info(PROG, &format!("Started {}", self.handler.name()));
        }
        Ok(())
    }

    fn supervise(&mut self) -> Result<Infallible, Error> {
        loop {
            let timeout = match self.child {
                Some(_) => -1,
                None => match self.restart_in() {
                    Some(left) => left,
                    None => {
                        self.restart();
                        continue;
                    }
                },
            };
            let mut fds = [serve::pollfd(self.signals.as_raw_fd(), libc::POLLIN)];
            sys::poll(&mut fds, timeout).map_err(|e| Error::sys("poll", &e))?;
            if fds[0].revents != 0 {
                self.handle_signals()?;
            }
        }
    }

    /// How many milliseconds remain until the program may start again
    /// (`None`: now).
    fn restart_in(&self) -> Option<i32> {
        let due = self.last_start + MIN_RUN;
        (Instant::now() < due).then(|| serve::ms_until(due))
    }

    fn restart(&mut self) {
        if let Err(e) = self.start() {
            error::warn(
                PROG,
                &format!(
                    "unable to spawn {}: {}",
                    self.handler.name(),
                    error::describe(&e)
                ),
            );
        }
    }

    fn handle_signals(&mut self) -> Result<(), Error> {
        while let Some(sig) =
            sys::read_signal(self.signals.as_fd()).map_err(|e| Error::sys("read signals", &e))?
        {
            match sig {
                libc::SIGCHLD => self.reap(),
                _ => {
                    if let Some(pid) = self.child {
                        // It may have just exited: nothing to do then.
                        let _ = sys::kill(pid, sig);
                    }
                    if sig != libc::SIGHUP {
                        self.stopping = true;
                    }
                }
            }
            if self.stopping && self.child.is_none() {
                std::process::exit(0);
            }
        }
        Ok(())
    }

    /// Collects every ended child (a logger started earlier in the chain
    /// is our child too) and notes the program's end.
    fn reap(&mut self) {
        while let Ok(Some((pid, exit))) = sys::try_wait(-1) {
            if self.child != Some(pid) {
                continue;
            }
            self.child = None;
            if self.verbose {
                let name = self.handler.name();
                match exit {
                    sys::Exit::Code(0) => {}
                    sys::Exit::Code(code) => error::info(
                        PROG,
                        &format!("{name} exited abnormally with status {code}"),
                    ),
                    sys::Exit::Signal(sig) => {
                        error::info(PROG, &format!("{name} was terminated by signal {sig}"))
                    }
                }
            }
        }
    }
}
