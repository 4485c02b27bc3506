//! Starting handlers fast: argv and the unchanging part of the environment
//! are prepared once; per connection only the connection's variables are
//! added, and the child is started with posix_spawn (vfork-like: no copy
//! of our address space) with default signal handling and an empty mask.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;

use crate::chain::{self, Env};
use crate::error::Error;
use crate::sys;

/// The cache key of the file actions that move no descriptor (no
/// descriptor has this number).
const INHERIT: RawFd = -1;

pub struct Handler {
    name: String,
    path: CString,
    search: bool,
    argv: sys::CArgs,
    /// Owns the strings `envp` points into.
    _base_env: Vec<CString>,
    /// The base environment's pointers, then per-spawn slots and a NULL.
    envp: Vec<*const libc::c_char>,
    base_len: usize,
    attr: sys::SpawnAttr,
    /// The descriptor moves of the last spawn: the connection nearly always
    /// gets the same descriptor number, so they are built once.
    actions: Option<(RawFd, sys::FileActions)>,
    /// The bare program name, while `path` is where $PATH led at start-up.
    found_in_path: Option<CString>,
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
        let mut found_in_path = None;
        let (path, search) = if program.as_bytes().contains(&b'/') {
            (c_argv[0].clone(), false)
        } else {
            match chain::tool_name(program).and_then(chain::locate_tool) {
                Some(path) => (
                    CString::new(path.as_os_str().as_bytes()).map_err(|_| nul())?,
                    false,
                ),
                None => match search_path(program, env) {
                    Some(path) => {
                        found_in_path = Some(c_argv[0].clone());
                        (path, false)
                    }
                    None => (c_argv[0].clone(), true),
                },
            }
        };
        let base_env = env.to_c();
        let envp: Vec<_> = base_env.iter().map(|s| s.as_ptr()).collect();
        let mut defaults = touched.to_vec();
        defaults.push(libc::SIGPIPE);
        let mut defaults = sys::SigSet::of(&defaults);
        for sig in sys::GLIBC_INTERNAL_SIGNALS {
            defaults.add_raw(sig);
        }
        let attr = sys::SpawnAttr::new(&defaults)
            .map_err(|e| Error::sys("set up posix_spawn attributes", &e))?;
        Ok(Handler {
            name: program.to_string_lossy().into_owned(),
            path,
            search,
            argv: sys::CArgs::new(c_argv),
            base_len: envp.len(),
            envp,
            _base_env: base_env,
            attr,
            actions: None,
            found_in_path,
        })
    }

    /// The program's name as given, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the handler with `fd` as its stdin and stdout and `vars`
    /// added to its environment; returns its pid.
    pub fn spawn(&mut self, fd: RawFd, vars: &[CString]) -> io::Result<i32> {
        if self
            .actions
            .as_ref()
            .is_none_or(|(cached, _)| *cached != fd)
        {
            self.actions = Some((fd, sys::FileActions::stdin_stdout(fd)?));
        }
        self.spawn_prepared(vars)
    }

    /// Starts the program with our own stdin, stdout and stderr and no
    /// variables added (the `skd -S` supervisor); returns its pid.
    pub fn spawn_inheriting(&mut self) -> io::Result<i32> {
        if self
            .actions
            .as_ref()
            .is_none_or(|(cached, _)| *cached != INHERIT)
        {
            self.actions = Some((INHERIT, sys::FileActions::none()?));
        }
        self.spawn_prepared(&[])
    }

    /// Spawns with the file actions already in place.
    fn spawn_prepared(&mut self, vars: &[CString]) -> io::Result<i32> {
        self.envp.truncate(self.base_len);
        self.envp.extend(vars.iter().map(|v| v.as_ptr()));
        self.envp.push(std::ptr::null());
        let result = self.spawn_now();
        if result
            .as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::ENOENT))
            && let Some(name) = self.found_in_path.take()
        {
            // The program found in $PATH at start-up is gone: search again,
            // now and from now on, as execvp would.
            self.path = name;
            self.search = true;
            return self.spawn_now();
        }
        result
    }

    fn spawn_now(&self) -> io::Result<i32> {
        let actions = &self.actions.as_ref().expect("built by spawn").1;
        sys::spawn(
            &self.path,
            self.search,
            actions,
            &self.attr,
            self.argv.as_ptr(),
            self.envp.as_ptr(),
        )
    }
}

/// Looks `program` up in the environment's $PATH once, at start-up, so that
/// each spawn execs it directly instead of trying every $PATH entry in
/// turn. `None`: not found now (posix_spawnp searches at each spawn).
fn search_path(program: &OsStr, env: &Env) -> Option<CString> {
    let path = env.get("PATH")?;
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|file| {
            std::fs::metadata(file)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .and_then(|file| CString::new(file.into_os_string().into_vec()).ok())
}
