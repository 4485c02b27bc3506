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
