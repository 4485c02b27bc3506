//! Starting handlers fast: argv, the unchanging part of the environment and
//! the program's path are prepared once; per connection only the
//! connection's variables are added, and the child is started by
//! `sys::Spawner` (vfork-like: no copy of our address space) with default
//! signal handling and an empty mask.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;

use crate::chain::{self, Env};
use crate::error::Error;
use crate::sys;

pub struct Handler {
    name: String,
    /// The programs to exec, tried in order: one path, or every $PATH
    /// candidate when the program was not found at start-up.
    paths: Vec<CString>,
    /// Every $PATH candidate, while `paths` holds just the one found at
    /// start-up: searched again if that one disappears.
    candidates: Option<Vec<CString>>,
    argv: sys::CArgs,
    /// The environment every handler gets, before its own variables.
    base_env: Vec<CString>,
    spawner: sys::Spawner,
}

impl Handler {
    /// `touched` lists the signals the server blocks or catches: the child
    /// gets them (and SIGPIPE, which the Rust runtime ignores, and glibc's
    /// internal signals) at default. Signals our caller chose to ignore
    /// stay ignored, as with tcpserver and s6.
    pub fn new(argv: &[OsString], env: &Env, touched: &[i32]) -> Result<Handler, Error> {
        let nul = || Error::usage("an argument contains a NUL byte");
        let c_argv = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| nul()))
            .collect::<Result<Vec<_>, _>>()?;
        let program = &argv[0];
        let mut candidates = None;
        let paths = if program.as_bytes().contains(&b'/') {
            vec![c_argv[0].clone()]
        } else if let Some(tool) = chain::tool_name(program).and_then(chain::locate_tool) {
            vec![CString::new(tool.into_os_string().into_vec()).map_err(|_| nul())?]
        } else {
            let all = path_candidates(program, env);
            match all.iter().find(|c| is_executable(c)) {
                Some(found) => {
                    let found = found.clone();
                    candidates = Some(all);
                    vec![found]
                }
                None => all,
            }
        };
        let mut defaults = touched.to_vec();
        defaults.push(libc::SIGPIPE);
        defaults.extend(sys::GLIBC_INTERNAL_SIGNALS);
        Ok(Handler {
            name: program.to_string_lossy().into_owned(),
            paths,
            candidates,
            argv: sys::CArgs::new(c_argv),
            base_env: env.to_c(),
            spawner: sys::Spawner::new(&defaults),
        })
    }

    /// The program's name as given, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the handler with `fd` as its stdin and stdout and `vars`
    /// added to its environment; returns its pid.
    pub fn spawn(&mut self, fd: RawFd, vars: &[CString]) -> io::Result<i32> {
        let result = self.spawn_now(fd, vars);
        if result
            .as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::ENOENT))
            && let Some(all) = self.candidates.take()
        {
            // The program found in $PATH at start-up is gone: search again,
            // now and from now on, as execvp would.
            self.paths = all;
            return self.spawn_now(fd, vars);
        }
        result
    }

    /// Starts the program with our own stdin, stdout and stderr and no
    /// variables added (the `skd -S` supervisor); returns its pid.
    pub fn spawn_inheriting(&mut self) -> io::Result<i32> {
        self.spawn(-1, &[])
    }

    fn spawn_now(&mut self, fd: RawFd, vars: &[CString]) -> io::Result<i32> {
        let env = [self.base_env.as_slice(), vars];
        self.spawner.spawn(&self.paths, &self.argv, &env, fd)
    }
}

/// Where execvp would look for `program`: each $PATH entry in turn (an
/// empty one is the current directory; no $PATH means /bin:/usr/bin).
fn path_candidates(program: &OsStr, env: &Env) -> Vec<CString> {
    let path = env.get("PATH").unwrap_or(OsStr::new("/bin:/usr/bin"));
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .filter_map(|file| CString::new(file.into_os_string().into_vec()).ok())
        .collect()
}

/// Whether `path` is an executable regular file now.
fn is_executable(path: &CString) -> bool {
    std::fs::metadata(OsStr::from_bytes(path.as_bytes()))
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
