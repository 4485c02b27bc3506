//! Starting handlers fast: argv, the unchanging part of the environment and
//! the program's path are prepared once; per connection only the
//! connection's variables are added, and the child is started by
//! `sys::Spawner` (no copy of our address space, no wait for its exec)
//! with default signal handling and an empty mask.

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
        let paths = if program.as_bytes().contains(&b'/') {
            vec![c_argv[0].clone()]
        } else if let Some(tool) = chain::tool_name(program).and_then(chain::locate_tool) {
            vec![CString::new(tool.into_os_string().into_vec()).map_err(|_| nul())?]
        } else {
            // Every $PATH candidate, as execvp tries them, but the one found
            // now first: no failed exec per connection for the directories
            // before it, and if it disappears the search goes on.
            let mut all = path_candidates(program, env);
            if let Some(found) = all.iter().position(is_executable) {
                let found = all.remove(found);
                all.insert(0, found);
            }
            all
        };
        let mut defaults = touched.to_vec();
        defaults.push(libc::SIGPIPE);
        defaults.extend(sys::GLIBC_INTERNAL_SIGNALS);
        let spawner = sys::Spawner::new(paths, c_argv, env.to_c(), &defaults)
            .map_err(|e| Error::sys("prepare to spawn handlers", &e))?;
        Ok(Handler {
            name: program.to_string_lossy().into_owned(),
            spawner,
        })
    }

    /// The program's name as given, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the handler with `fd` as its stdin and stdout and `vars`
    /// added to its environment, and returns its pid at once: whether it
    /// could exec is told by `exec_error` once it has ended. A server
    /// that waited for each exec would accept nothing meanwhile.
    pub fn start(&mut self, fd: RawFd, vars: Vec<CString>) -> io::Result<i32> {
        self.spawner.start(fd, vars)
    }

    /// For a handler started by `start` that has ended: the error that
    /// kept it from exec'ing, if that is why it ended (status 127).
    pub fn exec_error(&mut self, pid: i32) -> Option<io::Error> {
        self.spawner.exec_error(pid)
    }

    /// As `start`, but returns once the handler has exec'd, or the error
    /// that kept it from doing so (the child is then reaped).
    pub fn spawn(&mut self, fd: RawFd, vars: Vec<CString>) -> io::Result<i32> {
        let pid = self.spawner.start(fd, vars)?;
        self.spawner.wait_exec(pid)?;
        Ok(pid)
    }

    /// Starts the program with our own stdin, stdout and stderr and no
    /// variables added (the `skd -S` supervisor); returns its pid once it
    /// has exec'd.
    pub fn spawn_inheriting(&mut self) -> io::Result<i32> {
        self.spawn(-1, Vec::new())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};
    use std::path::PathBuf;

    fn handler(argv: &[&str], env: &Env) -> Handler {
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        Handler::new(&argv, env, &[]).unwrap()
    }

    /// Runs `h` with its stdout on a pipe and returns what it wrote.
    fn output(h: &mut Handler, vars: Vec<CString>) -> String {
        let (r, w) = sys::pipe().unwrap();
        let pid = h.spawn(w.as_raw_fd(), vars).unwrap();
        drop(w);
        let mut out = Vec::new();
        let mut buf = [0; 256];
        while let Ok(n @ 1..) = sys::read(r.as_fd(), &mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        sys::wait(pid).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skd-handler-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn script(path: &std::path::Path, body: &str) {
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_child_gets_its_own_variables() {
        let mut h = handler(&["/bin/sh", "-c", "echo $A $B"], &Env::from_process());
        let vars = vec![CString::new("A=1").unwrap(), CString::new("B=2").unwrap()];
        assert_eq!(output(&mut h, vars), "1 2\n");
        assert_eq!(output(&mut h, Vec::new()), "\n");
    }

    #[test]
    fn a_program_that_cannot_run_is_an_error_from_spawn() {
        let mut h = handler(&["/nonexistent/program"], &Env::from_process());
        let e = h.spawn(-1, Vec::new()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let e = handler(&["/dev/null"], &Env::from_process())
            .spawn(-1, Vec::new())
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    }

    #[test]
    fn started_children_report_their_exec_error_once_they_have_ended() {
        // More children than there are slots, none reaped until all have
        // started: every outcome is kept until asked for, and asked once.
        let mut bad = handler(&["/nonexistent/program"], &Env::from_process());
        let mut good = handler(&["/bin/true"], &Env::from_process());
        let mut pids = Vec::new();
        for i in 0..30 {
            let h = if i % 3 == 0 { &mut good } else { &mut bad };
            pids.push((i % 3 != 0, h.start(-1, Vec::new()).unwrap()));
        }
        for (fails, pid) in pids {
            let exit = sys::wait(pid).unwrap();
            let h = if fails { &mut bad } else { &mut good };
            let error = h.exec_error(pid).map(|e| e.raw_os_error());
            assert_eq!(error, fails.then_some(Some(libc::ENOENT)), "{exit:?}");
            assert!(h.exec_error(pid).is_none());
        }
    }

    #[test]
    fn path_search_tries_the_program_found_first_then_the_others() {
        let dir = temp_dir("path");
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        script(&b.join("prog"), "echo b");
        let mut env = Env::from_process();
        env.set("PATH", std::env::join_paths([&a, &b]).unwrap());
        let mut h = handler(&["prog"], &env);
        script(&a.join("prog"), "echo a");
        // Found in b at start-up: b's runs, though a now has one too.
        assert_eq!(output(&mut h, Vec::new()), "b\n");
        // Gone from b: the search goes on, as execvp's would.
        std::fs::remove_file(b.join("prog")).unwrap();
        assert_eq!(output(&mut h, Vec::new()), "a\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
