//! skd-background: the foreground returns when the chain is ready, with the
//! chain's failure when it fails, and leaves a session leader behind.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use common::*;

/// `skd-background skd-bind -t 127.0.0.1:0 skd-accept HANDLER...`, run to
/// its return: (the output, the daemon).
fn background_server(dir: &TempDir, handler: &[&str]) -> (std::process::Output, Daemon, u16) {
    let mut args = vec![SKD_BIND, "-t", "127.0.0.1:0", SKD_ACCEPT];
    args.extend_from_slice(handler);
    let out = run_leaving_daemon(cmd(SKD_BACKGROUND, &args), &dir.path("stderr"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let port: u16 = stdout
        .strip_suffix('\n')
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a port line: {stdout:?}; stderr: {stderr}"));
    let daemon = Daemon(listener_pid(port));
    (out, daemon, port)
}

fn one_line(stderr: &[u8]) -> String {
    let err = String::from_utf8_lossy(stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "expected one line: {err:?}");
    err
}

fn status(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn the_port_comes_back_at_once_and_the_daemon_serves() {
    let dir = TempDir::new();
    // run_leaving_daemon reads stdout to its end within TIMEOUT: nothing in
    // the background may keep the caller's stdout open.
    let (out, daemon, port) = background_server(&dir, &["cat"]);
    assert_eq!(out.stderr, b"", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        tcp_exchange(port, b"from the background"),
        b"from the background"
    );
    assert_eq!(tcp_exchange(port, b"again"), b"again");
    drop(daemon);
}

#[test]
fn a_port_in_use_fails_in_the_foreground() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(cmd(
        SKD_BACKGROUND,
        &[SKD_BIND, "-t", &addr, SKD_ACCEPT, "cat"],
    ));
    assert_eq!(status(&out), Some(111));
    let err = one_line(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "skd-bind: fatal: unable to bind to {}",
            taken.local_addr().unwrap().ip()
        )),
        "{err}"
    );
    assert!(err.contains("Address already in use"), "{err}");
    assert_eq!(out.stdout, b"");
}

#[test]
fn a_missing_program_gives_127() {
    // The background process itself cannot exec it...
    let out = run(cmd(SKD_BACKGROUND, &["skd-test-no-such-program", "x"]));
    assert_eq!(status(&out), Some(127));
    let err = one_line(&out.stderr);
    assert!(
        err.starts_with("skd-background: fatal: unable to exec skd-test-no-such-program: "),
        "{err}"
    );
    // ... or a tool further down the chain cannot.
    let out = run(cmd(
        SKD_BACKGROUND,
        &[SKD_BIND, "-t", "127.0.0.1:0", "/nonexistent/handler"],
    ));
    assert_eq!(status(&out), Some(127));
    let err = one_line(&out.stderr);
    assert!(
        err.starts_with("skd-bind: fatal: unable to exec /nonexistent/handler: "),
        "{err}"
    );
}

#[test]
fn a_program_that_cannot_be_executed_gives_126() {
    let dir = TempDir::new();
    let script = dir.path("not-executable");
    std::fs::write(&script, "#!/bin/sh\necho hello\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(cmd(SKD_BACKGROUND, &[script.to_str().unwrap()]));
    assert_eq!(status(&out), Some(126));
    let err = one_line(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn a_usage_error_later_in_the_chain_gives_100() {
    let out = run(cmd(
        SKD_BACKGROUND,
        &[SKD_BIND, "-t", "127.0.0.1:0", SKD_ACCEPT, "-c", "0", "cat"],
    ));
    assert_eq!(status(&out), Some(100));
    let err = one_line(&out.stderr);
    assert!(
        err.starts_with("skd-accept: fatal: invalid value for -c"),
        "{err}"
    );
}

#[test]
fn usage_errors_are_reported_before_anything_starts() {
    for args in [&[][..], &["-x", "cat"], &["--"]] {
        let out = run(cmd(SKD_BACKGROUND, args));
        assert_eq!(status(&out), Some(100), "{args:?}");
        let err = one_line(&out.stderr);
        assert!(err.starts_with("skd-background: "), "{err}");
        assert!(err.contains("usage: skd-background prog..."), "{err}");
    }
}

#[test]
fn failures_travel_through_a_nested_background() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(cmd(
        SKD_BACKGROUND,
        &[SKD_BACKGROUND, SKD_BIND, "-t", &addr, SKD_ACCEPT, "cat"],
    ));
    assert_eq!(status(&out), Some(111));
    let err = one_line(&out.stderr);
    assert!(err.starts_with("skd-bind: fatal: unable to bind"), "{err}");

    let dir = TempDir::new();
    let out = run_leaving_daemon(
        cmd(
            SKD_BACKGROUND,
            &[
                SKD_BACKGROUND,
                SKD_BIND,
                "-t",
                "127.0.0.1:0",
                SKD_ACCEPT,
                "cat",
            ],
        ),
        &dir.path("stderr"),
    );
    assert_eq!(status(&out), Some(0));
    let port: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let _daemon = Daemon(listener_pid(port));
    assert_eq!(tcp_exchange(port, b"nested"), b"nested");
}

/// Makes a pipe whose buffer is full, so that whoever writes to it blocks.
fn full_pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
    let (reader, mut writer) = std::io::pipe().unwrap();
    let fd = writer.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    loop {
        match writer.write(b"x") {
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("fill the pipe: {e}"),
        }
    }
    // The flag belongs to the open pipe, which the child shares: clear it.
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    (reader, writer)
}

#[test]
fn a_chain_killed_before_it_is_ready_is_reported() {
    // skd-bind blocks writing its port into a full stdout, so the chain
    // never gets ready; it is killed there. Its death closes the readiness
    // pipe without a status byte: that must not pass for readiness.
    let (reader, writer) = full_pipe();
    let mut c = cmd(
        SKD_BACKGROUND,
        &[SKD_BIND, "-t", "127.0.0.1:0", SKD_ACCEPT, "cat"],
    );
    c.stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    drop(c);
    let parent = child.id() as i32;
    let mut bound = 0;
    wait_until("skd-bind to block on its stdout", || {
        let Some(&(pid, state)) = children(parent).first() else {
            return false;
        };
        bound = pid;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        cmdline.starts_with(SKD_BIND.as_bytes()) && state == 'S'
    });
    signal(bound, 9);
    let out = wait_output(child);
    drop(reader);
    assert_eq!(status(&out), Some(111));
    let err = one_line(&out.stderr);
    assert_eq!(
        err,
        "skd-background: fatal: the background process was killed by signal 9\n"
    );
}

/// A pseudo-terminal: (master, slave).
fn pty() -> (File, File) {
    let master = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/ptmx")
        .unwrap();
    let fd = master.as_raw_fd();
    let mut name = [0 as libc::c_char; 64];
    // SAFETY: fd is an open pty master; name is writable for its length and
    // ptsname_r NUL-terminates what it writes.
    unsafe {
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
    }
    // SAFETY: ptsname_r succeeded, so name holds a NUL-terminated string.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path.to_str().unwrap())
        .unwrap();
    (master, slave)
}

fn link(pid: i32, fd: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Reads the pid from a pidfile written by the chain.
fn pid_in(path: &Path) -> i32 {
    let text = std::fs::read_to_string(path).unwrap();
    text.trim_end()
        .parse()
        .unwrap_or_else(|_| panic!("no pid in {path:?}: {text:?}"))
}

#[test]
fn the_daemon_is_a_session_leader_without_the_callers_terminal() {
    let dir = TempDir::new();
    let pidfile = dir.path("pid");
    let stderr = dir.path("stderr");
    let (_master, slave) = pty();
    let mut c = cmd(
        SKD_BACKGROUND,
        &[SKD_PIDFILE, pidfile.to_str().unwrap(), "sleep", "60"],
    );
    c.stdin(slave.try_clone().unwrap())
        .stdout(slave)
        .stderr(File::create(&stderr).unwrap());
    let out = wait_output(c.spawn().unwrap());
    drop(c);
    assert_eq!(
        status(&out),
        Some(0),
        "{}",
        std::fs::read_to_string(&stderr).unwrap()
    );
    let pid = pid_in(&pidfile);
    let _daemon = Daemon(pid);
    wait_until("sleep to run", || {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
    });
    assert_eq!(stat_field(pid, 6), i64::from(pid), "session id");
    assert_eq!(stat_field(pid, 5), i64::from(pid), "process group");
    assert_eq!(stat_field(pid, 7), 0, "no controlling terminal");
    assert_ne!(stat_field(pid, 6), stat_field(std::process::id() as i32, 6));
    assert_eq!(link(pid, 0), "/dev/null");
    assert_eq!(link(pid, 1), "/dev/null");
    assert_eq!(link(pid, 2), stderr.to_str().unwrap(), "stderr is kept");
}

#[test]
fn stdin_and_stdout_that_are_not_terminals_are_left_alone() {
    let dir = TempDir::new();
    let pidfile = dir.path("pid");
    let input = dir.path("input");
    let output = dir.path("output");
    std::fs::write(&input, "").unwrap();
    let mut c = cmd(
        SKD_BACKGROUND,
        &[SKD_PIDFILE, pidfile.to_str().unwrap(), "sleep", "60"],
    );
    c.stdin(File::open(&input).unwrap())
        .stdout(File::create(&output).unwrap())
        .stderr(File::create(dir.path("stderr")).unwrap());
    let out = wait_output(c.spawn().unwrap());
    drop(c);
    assert_eq!(status(&out), Some(0));
    let pid = pid_in(&pidfile);
    let _daemon = Daemon(pid);
    assert_eq!(stat_field(pid, 6), i64::from(pid), "session id");
    assert_eq!(link(pid, 0), input.to_str().unwrap());
    assert_eq!(link(pid, 1), output.to_str().unwrap());
}

#[test]
fn the_readiness_descriptor_does_not_reach_handlers() {
    let dir = TempDir::new();
    let (_, _daemon, port) = background_server(
        &dir,
        &["sh", "-c", "ls -l /proc/$$/fd; env | grep '^SKD_'; true"],
    );
    let out = String::from_utf8(tcp_exchange(port, b"")).unwrap();
    let fds = fd_listing(&out);
    let numbers: Vec<i32> = fds.iter().map(|f| f.0).collect();
    assert_eq!(numbers, expected_fds(), "{out}");
    assert!(fds[0].1.starts_with("socket:"), "{out}");
    assert!(!out.contains("SKD_"), "{out}");
}

#[test]
fn the_readiness_descriptor_does_not_reach_a_final_program() {
    let dir = TempDir::new();
    let report = dir.path("report");
    // The shell's own stdout is the report file: a redirection would make
    // the shell save its stdout on a descriptor of its own.
    let mut c = cmd(
        SKD_BACKGROUND,
        &[
            "sh",
            "-c",
            "ls -l /proc/$$/fd; env | grep '^SKD_'; echo done",
        ],
    );
    c.stdin(Stdio::null())
        .stdout(File::create(&report).unwrap())
        .stderr(File::create(dir.path("stderr")).unwrap());
    let out = wait_output(c.spawn().unwrap());
    drop(c);
    assert_eq!(status(&out), Some(0));
    wait_until("the report", || {
        std::fs::read_to_string(&report).is_ok_and(|r| r.ends_with("done\n"))
    });
    let text = std::fs::read_to_string(&report).unwrap();
    let numbers: Vec<i32> = fd_listing(&text).iter().map(|f| f.0).collect();
    assert_eq!(numbers, expected_fds(), "{text}");
    assert!(!text.contains("SKD_"), "{text}");
}
