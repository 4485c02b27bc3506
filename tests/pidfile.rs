//! skd-pidfile: the daemon's pid, written safely, locked for the daemon's
//! life, and never seen by handlers.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn one_line(stderr: &[u8]) -> String {
    let err = String::from_utf8_lossy(stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "expected one line: {err:?}");
    err
}

/// `skd-pidfile PIDFILE skd-bind -t 127.0.0.1:0 skd-accept HANDLER...`
fn server(pidfile: &Path, handler: &[&str]) -> Server {
    let mut args = vec![
        SKD_PIDFILE,
        pidfile.to_str().unwrap(),
        SKD_BIND,
        "-t",
        "127.0.0.1:0",
        SKD_ACCEPT,
    ];
    args.extend_from_slice(handler);
    Server::start(cmd(args[0], &args[1..]))
}

/// A second start on `pidfile`, which must fail.
fn second_instance(pidfile: &Path) -> std::process::Output {
    run(cmd(
        SKD_PIDFILE,
        &[pidfile.to_str().unwrap(), "sh", "-c", "echo the second ran"],
    ))
}

/// Whether process `pid` has `path` open.
fn holds(pid: i32, path: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
}

#[test]
fn the_file_holds_the_servers_pid() {
    let dir = TempDir::new();
    let pidfile = dir.path("server.pid");
    let srv = server(&pidfile, &["cat"]);
    let port = srv.port();
    assert_eq!(read(&pidfile), format!("{}\n", srv.pid()));
    assert_eq!(listener_pid(port), srv.pid());
    assert!(holds(srv.pid(), &pidfile), "the server holds the lock");
    assert_eq!(tcp_exchange(port, b"pid"), b"pid");
}

#[test]
fn a_symlink_at_the_pidfile_is_not_followed() {
    let dir = TempDir::new();
    let target = dir.path("precious");
    std::fs::write(&target, "keep me\n").unwrap();
    let pidfile = dir.path("planted.pid");
    symlink(&target, &pidfile).unwrap();
    let out = run(cmd(
        SKD_PIDFILE,
        &[pidfile.to_str().unwrap(), "echo", "ran"],
    ));
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        one_line(&out.stderr),
        format!(
            "skd-pidfile: fatal: unable to use {}: it is a symbolic link (not followed)\n",
            pidfile.display()
        )
    );
    assert_eq!(out.stdout, b"", "the program did not run");
    assert_eq!(read(&target), "keep me\n");
    assert!(pidfile.is_symlink());

    // A dangling link does not create its target either.
    let missing = dir.path("missing");
    let dangling = dir.path("dangling.pid");
    symlink(&missing, &dangling).unwrap();
    let out = run(cmd(SKD_PIDFILE, &[dangling.to_str().unwrap(), "true"]));
    assert_eq!(out.status.code(), Some(111));
    assert!(!missing.exists());
}

#[test]
fn a_hard_link_to_another_file_is_refused() {
    let dir = TempDir::new();
    let target = dir.path("precious");
    std::fs::write(&target, "keep me\n").unwrap();
    let pidfile = dir.path("linked.pid");
    std::fs::hard_link(&target, &pidfile).unwrap();
    let out = run(cmd(SKD_PIDFILE, &[pidfile.to_str().unwrap(), "true"]));
    assert_eq!(out.status.code(), Some(111));
    let err = one_line(&out.stderr);
    assert!(err.contains("it has 2 hard links"), "{err}");
    assert_eq!(read(&target), "keep me\n");
}

#[test]
fn only_a_regular_file_is_used() {
    let dir = TempDir::new();
    let fifo = dir.path("fifo.pid");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let out = run(cmd(SKD_PIDFILE, &[fifo.to_str().unwrap(), "true"]));
    assert_eq!(out.status.code(), Some(111));
    let err = one_line(&out.stderr);
    assert!(err.ends_with("it is not a regular file\n"), "{err}");

    let out = run(cmd(SKD_PIDFILE, &[dir.0.to_str().unwrap(), "true"]));
    assert_eq!(out.status.code(), Some(111));
    let err = one_line(&out.stderr);
    assert!(
        err.starts_with("skd-pidfile: fatal: unable to open "),
        "{err}"
    );
}

#[test]
fn a_second_instance_fails_and_leaves_the_file_alone() {
    let dir = TempDir::new();
    let pidfile = dir.path("server.pid");
    let srv = server(&pidfile, &["cat"]);
    let port = srv.port();
    let first = format!("{}\n", srv.pid());
    assert_eq!(read(&pidfile), first);
    let out = second_instance(&pidfile);
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        one_line(&out.stderr),
        format!(
            "skd-pidfile: fatal: unable to lock {}: already running, pid {}\n",
            pidfile.display(),
            srv.pid()
        )
    );
    assert_eq!(out.stdout, b"");
    assert_eq!(read(&pidfile), first);
    assert_eq!(tcp_exchange(port, b"still here"), b"still here");
}

#[test]
fn a_stale_file_is_overwritten() {
    let dir = TempDir::new();
    let pidfile = dir.path("stale.pid");
    std::fs::write(&pidfile, "1234567890\nmore old junk\n").unwrap();
    let srv = server(&pidfile, &["cat"]);
    srv.port();
    assert_eq!(read(&pidfile), format!("{}\n", srv.pid()));
}

#[test]
fn the_lock_dies_with_the_daemon() {
    let dir = TempDir::new();
    let pidfile = dir.path("server.pid");
    let mut srv = server(&pidfile, &["cat"]);
    srv.port();
    srv.stop(libc::SIGTERM);
    let out = run(cmd(
        SKD_PIDFILE,
        &[pidfile.to_str().unwrap(), "sh", "-c", "echo $$"],
    ));
    assert_eq!(out.status.code(), Some(0), "{:?}", out);
    let pid = String::from_utf8(out.stdout).unwrap();
    assert_eq!(read(&pidfile), pid, "the pid of the program that ran");
}

#[test]
fn the_lock_reaches_neither_handlers_nor_their_environment() {
    let dir = TempDir::new();
    let pidfile = dir.path("server.pid");
    let srv = server(
        &pidfile,
        &["sh", "-c", "ls -l /proc/$$/fd; env | grep '^SKD_'; true"],
    );
    let out = String::from_utf8(tcp_exchange(srv.port(), b"")).unwrap();
    let fds = fd_listing(&out);
    let numbers: Vec<i32> = fds.iter().map(|f| f.0).collect();
    assert_eq!(numbers, expected_fds(), "{out}");
    assert!(!out.contains("SKD_"), "{out}");
    assert!(holds(srv.pid(), &pidfile), "the server holds the lock");
}

#[test]
fn a_final_program_holds_the_lock_without_the_variable() {
    let dir = TempDir::new();
    let pidfile = dir.path("daemon.pid");
    let srv = Server::start(cmd(
        SKD_PIDFILE,
        &[
            pidfile.to_str().unwrap(),
            "sh",
            "-c",
            "echo ${SKD_PIDFILE_FD-unset}; exec sleep 60",
        ],
    ));
    assert_eq!(srv.line(), "unset");
    assert_eq!(read(&pidfile), format!("{}\n", srv.pid()));
    wait_until("sleep to run", || {
        std::fs::read(format!("/proc/{}/cmdline", srv.pid()))
            .is_ok_and(|c| c.starts_with(b"sleep\0"))
    });
    assert!(holds(srv.pid(), &pidfile), "sleep holds the lock");
    let out = second_instance(&pidfile);
    assert_eq!(out.status.code(), Some(111));
    let err = one_line(&out.stderr);
    assert!(
        err.contains(&format!("already running, pid {}", srv.pid())),
        "{err}"
    );
}

#[test]
fn two_pidfiles_in_one_chain_are_both_held_and_hidden_from_handlers() {
    let dir = TempDir::new();
    let a = dir.path("a.pid");
    let b = dir.path("b.pid");
    let srv = Server::start(cmd(
        SKD_PIDFILE,
        &[
            a.to_str().unwrap(),
            SKD_PIDFILE,
            b.to_str().unwrap(),
            SKD_BIND,
            "-t",
            "127.0.0.1:0",
            SKD_ACCEPT,
            "sh",
            "-c",
            "ls -l /proc/$$/fd",
        ],
    ));
    let out = String::from_utf8(tcp_exchange(srv.port(), b"")).unwrap();
    let numbers: Vec<i32> = fd_listing(&out).iter().map(|f| f.0).collect();
    assert_eq!(numbers, expected_fds(), "{out}");
    for pidfile in [&a, &b] {
        assert_eq!(read(pidfile), format!("{}\n", srv.pid()));
        assert!(holds(srv.pid(), pidfile), "{pidfile:?}");
        let out = second_instance(pidfile);
        assert_eq!(out.status.code(), Some(111), "{pidfile:?}");
    }
}

#[test]
fn the_lock_survives_a_closed_stdin_and_the_socket_moving_there() {
    // With stdin closed, open(2) gives the pidfile descriptor 0, where
    // skd-bind then puts its socket: the lock must have moved out of the way.
    let dir = TempDir::new();
    let pidfile = dir.path("server.pid");
    let srv = Server::start(cmd(
        "sh",
        &[
            "-c",
            "exec 0<&-; exec \"$@\"",
            "sh",
            SKD_PIDFILE,
            pidfile.to_str().unwrap(),
            SKD_BIND,
            "-t",
            "127.0.0.1:0",
            SKD_ACCEPT,
            "cat",
        ],
    ));
    let port = srv.port();
    assert_eq!(read(&pidfile), format!("{}\n", srv.pid()));
    assert_eq!(second_instance(&pidfile).status.code(), Some(111));
    assert_eq!(tcp_exchange(port, b"ok"), b"ok");
}

#[test]
fn usage_errors() {
    for args in [&[][..], &["x.pid"], &["", "true"], &["-x", "x.pid", "true"]] {
        let out = run(cmd(SKD_PIDFILE, args));
        assert_eq!(out.status.code(), Some(100), "{args:?}");
        let err = one_line(&out.stderr);
        assert!(err.starts_with("skd-pidfile: fatal: "), "{err}");
        assert!(err.contains("usage: skd-pidfile pidfile prog..."), "{err}");
    }
}

#[test]
fn in_the_background_the_file_is_written_before_the_foreground_returns() {
    let dir = TempDir::new();
    let pidfile = dir.path("daemon.pid");
    let out = run_leaving_daemon(
        cmd(
            SKD_BACKGROUND,
            &[
                SKD_PIDFILE,
                pidfile.to_str().unwrap(),
                SKD_BIND,
                "-t",
                "127.0.0.1:0",
                SKD_ACCEPT,
                "cat",
            ],
        ),
        &dir.path("stderr"),
    );
    // Read at once: no waiting for the file.
    let content = read(&pidfile);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let daemon = Daemon(listener_pid(port));
    assert_eq!(content, format!("{}\n", daemon.0));
    assert_eq!(tcp_exchange(port, b"bg"), b"bg");
}

#[test]
fn a_pidfile_written_before_skd_background_names_the_daemon() {
    // skd-pidfile writes the pid of the process that skd-background then
    // turns into the foreground: the background child takes the file over.
    let dir = TempDir::new();
    let pidfile = dir.path("daemon.pid");
    let out = run_leaving_daemon(
        cmd(
            SKD_PIDFILE,
            &[
                pidfile.to_str().unwrap(),
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
    let content = read(&pidfile);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let daemon = Daemon(listener_pid(port));
    assert_eq!(content, format!("{}\n", daemon.0));
    assert!(holds(daemon.0, &pidfile), "the daemon holds the lock");
    let out = second_instance(&pidfile);
    assert_eq!(out.status.code(), Some(111));
    assert!(
        one_line(&out.stderr).contains(&format!("already running, pid {}", daemon.0)),
        "the lock outlives the foreground"
    );
}
