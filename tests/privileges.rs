//! Privileges and files: what a chain leaves a handler, and what it does
//! to the paths it is given (no symbolic link followed to clobber a file,
//! no regular file unlinked, socket modes from the umask).

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::Path;

use common::*;

/// Runs skd-bind on a unix path that something is in the way of; it must
/// fail with one line and leave the thing as it was.
fn refused(path: &Path) -> String {
    let out = run(cmd(
        SKD_BIND,
        &["-l", path.to_str().unwrap(), SKD_ACCEPT, "cat"],
    ));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(111), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("a file that is not a socket is in the way"),
        "{err}"
    );
    err
}

#[test]
fn a_symbolic_link_at_the_socket_path_is_never_followed_nor_removed() {
    let dir = TempDir::new();
    let victim = dir.path("victim");
    std::fs::write(&victim, "precious").unwrap();

    // To a regular file.
    let link = dir.path("to-file");
    symlink(&victim, &link).unwrap();
    refused(&link);
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // Dangling: bind(2) would create the socket at the link's target.
    let target = dir.path("would-be-created");
    let dangling = dir.path("dangling");
    symlink(&target, &dangling).unwrap();
    refused(&dangling);
    assert!(!target.exists(), "a socket was made through the link");
    assert!(std::fs::symlink_metadata(&dangling).unwrap().is_symlink());

    // To a stale socket: the link is not a socket, so it stays, and so
    // does the socket it points to.
    let stale = dir.path("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let to_socket = dir.path("to-socket");
    symlink(&stale, &to_socket).unwrap();
    refused(&to_socket);
    assert!(std::fs::symlink_metadata(&to_socket).unwrap().is_symlink());
    assert!(
        std::fs::symlink_metadata(&stale)
            .unwrap()
            .file_type()
            .is_socket()
    );
}

#[test]
fn a_regular_file_directory_or_fifo_at_the_socket_path_is_never_removed() {
    let dir = TempDir::new();
    let file = dir.path("file");
    std::fs::write(&file, "keep").unwrap();
    refused(&file);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");

    let empty = dir.path("empty");
    std::fs::write(&empty, "").unwrap();
    refused(&empty);
    assert!(empty.is_file());

    let sub = dir.path("dir");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("inside"), "x").unwrap();
    refused(&sub);
    assert!(sub.join("inside").is_file());

    let fifo = dir.path("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    refused(&fifo);
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

/// The permission bits of the socket skd-bind makes under `umask`.
fn socket_mode(umask: &str) -> u32 {
    let dir = TempDir::new();
    let path = dir.path("s");
    let script = format!(
        "umask {umask}; exec {SKD_BIND} -l {} {SKD_ACCEPT} cat",
        path.display()
    );
    let _srv = Server::start(cmd("sh", &["-c", &script]));
    wait_until("the socket", || path.exists());
    std::fs::symlink_metadata(&path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn unix_socket_permissions_follow_the_umask() {
    assert_eq!(socket_mode("000"), 0o777);
    assert_eq!(socket_mode("022"), 0o755);
    assert_eq!(socket_mode("007"), 0o770);
    assert_eq!(socket_mode("077"), 0o700);
}

#[test]
fn a_socket_file_is_removed_when_the_next_program_cannot_run() {
    let dir = TempDir::new();
    let path = dir.path("s");
    let out = run(cmd(
        SKD_BIND,
        &["-l", path.to_str().unwrap(), "/nonexistent/prog"],
    ));
    assert_eq!(out.status.code(), Some(127));
    assert!(!path.exists(), "the socket file was left behind");
    // A socket file that was already there (stale) is replaced, then
    // removed in the same way: nothing of ours is left.
    drop(UnixListener::bind(&path).unwrap());
    let out = run(cmd(
        SKD_BIND,
        &["-l", path.to_str().unwrap(), "/etc/passwd"],
    ));
    assert_eq!(out.status.code(), Some(126));
    assert!(!path.exists());
}

#[test]
fn a_live_server_socket_is_never_taken_over() {
    // As with a TCP port in use: a second start on the same path (an init
    // script run twice) must fail, not unlink the first server's socket
    // and leave it unreachable.
    let dir = TempDir::new();
    for datagram in [false, true] {
        let path = dir.path(if datagram { "d.sock" } else { "s.sock" });
        let p = path.to_str().unwrap();
        let first = if datagram {
            Server::start(cmd(SKD_BIND, &["-x", p, "-d", SKD_DGRAM, "cat"]))
        } else {
            Server::start(cmd(SKD_BIND, &["-l", p, SKD_ACCEPT, "cat"]))
        };
        wait_until("the first server's socket", || path.exists());
        let second = if datagram {
            run(cmd(SKD_BIND, &["-x", p, "-d", SKD_DGRAM, "cat"]))
        } else {
            run(cmd(SKD_BIND, &["-l", p, SKD_ACCEPT, "cat"]))
        };
        let err = String::from_utf8_lossy(&second.stderr);
        assert_eq!(second.status.code(), Some(111), "{err}");
        assert_eq!(
            err,
            format!("skd-bind: fatal: unable to bind to {p}: Address already in use\n")
        );
        // A stream server of the other kind is just as alive.
        let other = if datagram {
            run(cmd(SKD_BIND, &["-l", p, SKD_ACCEPT, "cat"]))
        } else {
            run(cmd(SKD_BIND, &["-x", p, "-d", SKD_DGRAM, "cat"]))
        };
        assert_eq!(other.status.code(), Some(111));
        if datagram {
            let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
            client.send_to(b"still here", &path).unwrap();
        } else {
            assert_eq!(unix_exchange(&path, b"still here"), b"still here");
        }
        drop(first);
    }
}

/// Run by `unshare -m`: /dev becomes a tmpfs holding only `null` and
/// `log`, a symlink to `$1/log.sock` (our stand-in syslog daemon); then
/// the chain is exec'd.
const NAMESPACE: &str = r#"set -e
d=$1; shift
: > "$d/null"
mount --bind /dev/null "$d/null"
mount -t tmpfs -o mode=755 tmpfs /dev
: > /dev/null
mount --bind "$d/null" /dev/null
ln -s "$d/log.sock" /dev/log
exec "$@""#;

/// The credential lines of /proc/PID/status: ids, groups, capabilities.
fn credentials(status: &str) -> Vec<String> {
    status
        .lines()
        .filter(|l| {
            [
                "Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapAmb:",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(|l| l.trim_end().to_string())
        .collect()
}

fn credentials_of(pid: i32) -> Vec<String> {
    credentials(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap())
}

#[test]
fn every_process_of_a_privileged_chain_ends_up_exactly_as_asked() {
    // skd-bind (as root) skd-log -U (logger child) skd-setuid skd-accept,
    // and the classic skd -U -L that makes the same chain: the server, the logger and each handler have exactly the uid, gid
    // and groups asked for, as real, effective, saved and filesystem ids,
    // no capability, and cannot get root back.
    let dir = TempDir::new();
    let syslog = std::os::unix::net::UnixDatagram::bind(dir.path("log.sock")).unwrap();
    std::fs::set_permissions(dir.path("log.sock"), PermissionsExt::from_mode(0o666)).unwrap();
    let uid = 2_000_000_000 + std::process::id() % 1_000_000;
    let handler = "grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapAmb):' /proc/self/status; \
        /usr/bin/python3 -c 'import os; os.setuid(0)' 2>/dev/null; echo setuid $?; \
        /usr/bin/python3 -c 'import os; os.setgroups([0])' 2>/dev/null; echo setgroups $?; \
        echo to the log >&2";
    let chain = [
        SKD_BIND,
        "-t",
        "127.0.0.1:0",
        SKD_LOG,
        "-U",
        "privtest",
        SKD_SETUID,
        SKD_ACCEPT,
    ];
    let classic = [SKD, "-U", "-L", "privtest", "-t", "127.0.0.1:0"];
    for chain in [&chain[..], &classic[..]] {
        let mut args = vec!["-m", "sh", "-c", NAMESPACE, "sh", dir.0.to_str().unwrap()];
        args.extend_from_slice(chain);
        args.extend(["sh", "-c", handler]);
        check_privileged_chain(cmd(&require("unshare"), &args), uid, &syslog);
    }
}

/// Runs a chain that drops to `uid` (gid `uid + 1`, groups that and 100)
/// with a logger, and checks the handler, the server and the logger.
fn check_privileged_chain(
    mut c: std::process::Command,
    uid: u32,
    syslog: &std::os::unix::net::UnixDatagram,
) {
    let gid = uid + 1;
    c.env("UID", uid.to_string())
        .env("GID", gid.to_string())
        .env("GIDLIST", format!("{gid},100"))
        .env_remove("ROOT");
    let srv = Server::start(c);
    let port = srv.port();
    let expected = [
        format!("Uid:\t{uid}\t{uid}\t{uid}\t{uid}"),
        format!("Gid:\t{gid}\t{gid}\t{gid}\t{gid}"),
        format!("Groups:\t100 {gid}"),
        "CapInh:\t0000000000000000".into(),
        "CapPrm:\t0000000000000000".into(),
        "CapEff:\t0000000000000000".into(),
        "CapAmb:\t0000000000000000".into(),
    ];

    let out = String::from_utf8(tcp_exchange(port, b"")).unwrap();
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    let tail = lines.split_off(lines.len() - 2);
    assert_eq!(
        credentials(&lines.join("\n")),
        expected,
        "the handler: {out}"
    );
    assert_eq!(
        tail,
        ["setuid 1", "setgroups 1"],
        "the handler regained root"
    );

    assert_eq!(credentials_of(srv.pid()), expected, "the server");
    let loggers: Vec<i32> = children(srv.pid())
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| {
            // Forked by skd-log and never exec'd.
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.ends_with("skd-log"))
        })
        .collect();
    assert_eq!(loggers.len(), 1, "{loggers:?}");
    assert_eq!(credentials_of(loggers[0]), expected, "the logger");

    // And the logger, unprivileged, still delivers the handler's stderr.
    syslog.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 1024];
    let n = syslog.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(
        msg.contains("privtest") && msg.ends_with("to the log"),
        "{msg}"
    );
}

#[test]
fn a_chain_started_with_stderr_closed_gives_handlers_dev_null_there() {
    // Otherwise the first file a tool or handler opened (here the pidfile)
    // would become its stderr, and error messages would go into it. The
    // Rust runtime of each tool reopens a closed 0, 1 or 2 on /dev/null.
    let dir = TempDir::new();
    let script = format!(
        "exec 2>&-; exec {SKD_BIND} -t 127.0.0.1:0 {SKD_PIDFILE} {} {SKD_ACCEPT} \
         sh -c 'readlink /proc/$$/fd/2'",
        dir.path("p").display()
    );
    let srv = Server::start(cmd("sh", &["-c", &script]));
    assert_eq!(tcp_exchange(srv.port(), b""), b"/dev/null\n");
}
