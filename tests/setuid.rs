//! skd-setuid: run as root, become the user in $UID/$GID/$GIDLIST, inside
//! $ROOT when set.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// `skd-setuid prog...` with exactly these privilege variables set.
fn setuid(vars: &[(&str, &str)], prog: &[&str]) -> Command {
    let mut c = cmd(SKD_SETUID, prog);
    for name in ["UID", "GID", "GIDLIST", "ROOT"] {
        c.env_remove(name);
    }
    c.envs(vars.iter().copied());
    c
}

fn stdout_of(c: Command) -> String {
    let out = run(c);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stderr, b"", "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Environment variables to set.
type Vars<'a> = &'a [(&'a str, &'a str)];

const NOBODY: [(&str, &str); 2] = [("UID", "65534"), ("GID", "65534")];

#[test]
fn id_shows_exactly_the_requested_user_group_and_groups() {
    assert_eq!(
        stdout_of(setuid(&NOBODY, &["id"])),
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n"
    );
    let with_list = [NOBODY[0], NOBODY[1], ("GIDLIST", "65534,100")];
    assert_eq!(
        stdout_of(setuid(&with_list, &["id"])),
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup),100(users)\n"
    );
    // Real, effective, saved and filesystem ids, and the group list.
    let status = ["grep", "-E", "^(Uid|Gid|Groups):", "/proc/self/status"];
    assert_eq!(
        stdout_of(setuid(&with_list, &status)),
        "Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nGroups:\t100 65534 \n"
    );
    let vars = [("UID", "1"), ("GID", "2"), ("GIDLIST", "")];
    assert_eq!(
        stdout_of(setuid(&vars, &status)),
        "Uid:\t1\t1\t1\t1\nGid:\t2\t2\t2\t2\nGroups:\t \n",
        "an empty GIDLIST leaves no supplementary group"
    );
}

#[test]
fn the_variables_are_left_for_the_next_program() {
    let vars = [NOBODY[0], NOBODY[1], ("GIDLIST", "65534,100")];
    let out = stdout_of(setuid(
        &vars,
        &["sh", "-c", "env | grep -E '^(UID|GID|GIDLIST)=' | sort"],
    ));
    assert_eq!(out, "GID=65534\nGIDLIST=65534,100\nUID=65534\n");
}

#[test]
fn root_cannot_be_regained_by_a_handler() {
    let mut c = cmd(
        SKD_BIND,
        &[
            "-t",
            "127.0.0.1:0",
            SKD_SETUID,
            SKD_ACCEPT,
            "sh",
            "-c",
            "/usr/bin/python3 -c 'import os; os.setuid(0)' 2>/dev/null; echo $?; id -u",
        ],
    );
    c.envs(NOBODY);
    let srv = Server::start(c);
    let out = tcp_exchange(srv.port(), b"");
    assert_eq!(String::from_utf8_lossy(&out), "1\n65534\n");
}

/// Copies `file` into `root` at the same path.
fn copy_in(root: &Path, file: &str) {
    let dest = root.join(file.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(file, &dest).unwrap_or_else(|e| panic!("copy {file}: {e}"));
}

#[test]
fn root_chroots_before_the_drop_and_the_program_runs_inside() {
    let busybox = require("busybox");
    let dir = TempDir::new();
    let root = dir.path("root");
    // busybox and the shared libraries it needs, at their own paths.
    copy_in(&root, &busybox);
    let ldd = String::from_utf8(run(cmd("ldd", &[&busybox])).stdout).unwrap();
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        copy_in(&root, lib);
    }
    std::fs::write(root.join("marker"), "inside\n").unwrap();
    let mut vars = NOBODY.to_vec();
    vars.push(("ROOT", root.to_str().unwrap()));
    let script = "pwd; busybox cat /marker; busybox id -u; busybox id -g; echo $ROOT; \
                  busybox ls /proc 2>&1 || true";
    let out = stdout_of(setuid(&vars, &[&busybox, "sh", "-c", script]));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("/"));
    assert_eq!(lines.next(), Some("inside"));
    assert_eq!(lines.next(), Some("65534"));
    assert_eq!(lines.next(), Some("65534"));
    assert_eq!(lines.next(), root.to_str());
    let proc = lines.next().unwrap_or_default();
    assert!(
        proc.contains("No such file"),
        "no /proc in the new root: {out}"
    );
}

#[test]
fn a_failed_system_call_exits_111_without_running_the_program() {
    let cases: &[(Vars, &str)] = &[
        (
            &[NOBODY[0], NOBODY[1], ("ROOT", "/nonexistent")],
            "unable to chdir to /nonexistent: No such file or directory",
        ),
        (
            &[NOBODY[0], NOBODY[1], ("ROOT", "/etc/passwd")],
            "unable to chdir to /etc/passwd: Not a directory",
        ),
    ];
    for (vars, text) in cases {
        let out = run(setuid(vars, &["echo", "ran"]));
        assert_eq!(out.status.code(), Some(111), "{vars:?}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("skd-setuid: fatal: {text}\n")
        );
        assert_eq!(out.stdout, b"");
    }
    // Once unprivileged, there is no way back.
    let out = run(setuid(
        &NOBODY,
        &["env", "UID=0", "GID=0", SKD_SETUID, "echo", "ran"],
    ));
    assert_eq!(out.status.code(), Some(111), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd-setuid: fatal: unable to set the supplementary groups: Operation not permitted\n"
    );
    assert_eq!(out.stdout, b"");
}

#[test]
fn bad_input_gives_one_line_and_status_100() {
    let cases: &[(&[&str], Vars, &str)] = &[
        (&[], &NOBODY, "no program to run"),
        (&["-x", "id"], &NOBODY, "invalid option '-x'"),
        (&["id"], &[], "UID is not set"),
        (&["id"], &[("UID", "1")], "GID is not set"),
        (&["id"], &[("GID", "1")], "UID is not set"),
        (&["id"], &[("UID", ""), ("GID", "1")], "invalid UID: \"\""),
        (
            &["id"],
            &[("UID", "nobody"), ("GID", "1")],
            "invalid UID: \"nobody\"",
        ),
        (
            &["id"],
            &[("UID", "-1"), ("GID", "1")],
            "invalid UID: \"-1\"",
        ),
        (
            &["id"],
            &[("UID", "4294967295"), ("GID", "1")],
            "invalid UID: \"4294967295\" (must be an integer from 0 to 4294967294)",
        ),
        (
            &["id"],
            &[("UID", "1"), ("GID", "1.5")],
            "invalid GID: \"1.5\"",
        ),
        (
            &["id"],
            &[("UID", "1"), ("GID", "1"), ("GIDLIST", "1,,2")],
            "invalid GIDLIST: \"1,,2\"",
        ),
        (
            &["id"],
            &[("UID", "1"), ("GID", "1"), ("GIDLIST", "users")],
            "invalid GIDLIST: \"users\"",
        ),
        (
            &["id"],
            &[("UID", "1"), ("GID", "1"), ("ROOT", "")],
            "ROOT is set but empty",
        ),
    ];
    for (args, vars, text) in cases {
        let out = run(setuid(vars, args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(100), "{args:?} {vars:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("skd-setuid: fatal: "), "{err}");
        assert!(err.contains(text), "{args:?} {vars:?}: {err}");
        assert_eq!(out.stdout, b"", "the program must not run");
    }
}

#[test]
fn a_drop_that_leaves_root_reachable_is_refused() {
    // SECBIT_NO_SETUID_FIXUP: setuid to a user keeps root's capabilities,
    // so setuid(0) would still work afterwards. The check must see it.
    let script = "import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(28, 4, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), 'prctl(PR_SET_SECUREBITS)')
os.execv(sys.argv[1], sys.argv[1:])";
    let mut c = cmd(
        "/usr/bin/python3",
        &["-c", script, SKD_SETUID, "echo", "ran"],
    );
    c.envs(NOBODY);
    let out = run(c);
    assert_eq!(out.status.code(), Some(111), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd-setuid: fatal: unable to drop privileges: setuid(0) still succeeds\n"
    );
    assert_eq!(out.stdout, b"");
}
