//! Bad input, tool by tool and option by option: every case gives exactly
//! one line on stderr naming the problem, the documented exit status, and
//! leaves nothing behind. The table is built from value classes so that
//! each option meets every kind of bad value.

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::process::Stdio;

use common::*;

struct Case {
    tool: &'static str,
    args: Vec<OsString>,
    /// What stdin is: None for /dev/null, or a socket made by `stdin`.
    stdin: Stdin,
    code: i32,
    /// Texts the one line must contain: what is wrong, and where.
    says: Vec<String>,
    /// Privilege variables to set (all others are removed).
    env: Vec<(&'static str, String)>,
}

#[derive(Clone, Copy)]
enum Stdin {
    Null,
    StreamListener,
    Datagram,
    RegularFile,
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn case(tool: &'static str, args: Vec<OsString>, code: i32, says: &[&str]) -> Case {
    Case {
        tool,
        args,
        stdin: Stdin::Null,
        code,
        says: says.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
    }
}

fn with_env(mut c: Case, env: &[(&'static str, &str)]) -> Case {
    c.env = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
    c
}

/// Decimal option values that must all be refused.
const BAD_NUMBERS: &[&str] = &[
    "",
    "x",
    "-1",
    "0",
    "+1",
    " 1",
    "1 ",
    "1.5",
    "0x10",
    "1e3",
    "١",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999",
    "1\n2",
    "\x1b[2J",
];

/// Internet address specs that are usage errors.
const BAD_ADDRESSES: &[&str] = &[
    "",
    ":",
    "x",
    "-1",
    "+80",
    "65536",
    "99999",
    "4294967296",
    "18446744073709551616",
    "[::1:80",
    "::1]:80",
    "[::1]",
    "[::1]80",
    "[nothost]:80",
    "[[::1]]:80",
    "127.0.0.1:",
    "127.0.0.1:x",
    "127.0.0.1:-1",
    "127.0.0.1:65536",
    "host:port",
    "80\nskd-bind: fatal: forged",
];

fn table(dir: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let d = |name: &str| dir.join(name).into_os_string().into_string().unwrap();

    // Every tool: no program, unknown options.
    for (tool, base, missing) in [
        (SKD_BIND, &["-t", "127.0.0.1:0"][..], "no program to run"),
        (SKD_ACCEPT, &[][..], "no program to run"),
        (SKD_DGRAM, &[][..], "no program to run"),
        (SKD_BACKGROUND, &[][..], "no program to run"),
        (SKD_PIDFILE, &[][..], "no pidfile given"),
        (SKD_LOG, &[][..], "no log destination given"),
        (SKD_LOG, &["tag"][..], "no program to run"),
        (SKD_SETUID, &[][..], "no program to run"),
        (SKD, &[][..], "no program to run"),
        (SKD, &["-t", "0"][..], "no program to run"),
    ] {
        cases.push(case(tool, os(base), 100, &[missing, "usage: "]));
        for (opt, named) in [
            ("-Q", "'-Q'"),
            ("--long", "'--long'"),
            ("--long=x", "'--long'"),
            ("-\u{e9}", "'-\u{e9}'"),
        ] {
            let mut args = vec![opt];
            args.extend_from_slice(base);
            args.push("true");
            cases.push(case(tool, os(&args), 100, &["invalid option", named]));
        }
    }

    // Numeric options: every class of bad value, and none at all.
    let unix = d("s");
    for (tool, opt, before, after, max) in [
        (SKD, "-b", &["-l", &unix][..], &["true"][..], "2147483647"),
        (SKD, "-c", &["-l", &unix][..], &["true"][..], "2147483647"),
        (
            SKD_BIND,
            "-b",
            &["-t", "127.0.0.1:0"][..],
            &["true"][..],
            "2147483647",
        ),
        (SKD_ACCEPT, "-c", &[][..], &["cat"][..], "2147483647"),
    ] {
        for value in BAD_NUMBERS {
            let mut args = before.to_vec();
            args.extend([opt, value]);
            args.extend_from_slice(after);
            // Quoted, control characters escaped.
            let quoted = format!("{value:?}");
            cases.push(case(
                tool,
                os(&args),
                100,
                &[&format!("invalid value for {opt}"), &quoted, max],
            ));
        }
        let mut args = before.to_vec();
        args.push(opt);
        cases.push(case(tool, os(&args), 100, &["missing argument", opt]));
    }

    // Internet addresses, for each of the three letters.
    for opt in ["-i", "-t", "-u"] {
        for spec in BAD_ADDRESSES {
            let quoted = format!("{spec:?}");
            for tool in [SKD_BIND, SKD] {
                cases.push(case(
                    tool,
                    os(&[opt, spec, "true"]),
                    100,
                    &["invalid address", &quoted],
                ));
            }
        }
        let mut bytes = b"127.0.0.1:".to_vec();
        bytes.push(0xff);
        cases.push(case(
            SKD_BIND,
            vec![opt.into(), OsString::from_vec(bytes), "true".into()],
            100,
            &["invalid address", "not valid UTF-8"],
        ));
        cases.push(case(
            SKD_BIND,
            os(&[opt, "host.invalid:0", "true"]),
            111,
            &["unable to resolve host.invalid"],
        ));
        cases.push(case(
            SKD_BIND,
            os(&[opt, "192.0.2.1:0", "true"]),
            111,
            &["unable to bind to 192.0.2.1 port 0"],
        ));
        cases.push(case(SKD_BIND, os(&[opt]), 100, &["missing argument", opt]));
    }

    // Unix paths.
    let long = "s".repeat(108);
    let very_long = "s".repeat(5000);
    for opt in ["-l", "-x"] {
        cases.push(case(
            SKD_BIND,
            os(&[opt, "", "true"]),
            100,
            &["empty unix socket path"],
        ));
        cases.push(case(
            SKD_BIND,
            os(&[opt, &long, "true"]),
            100,
            &["unix socket path too long: 108 bytes (at most 107)"],
        ));
        cases.push(case(
            SKD_BIND,
            os(&[opt, &very_long, "true"]),
            100,
            &["unix socket path too long: 5000 bytes"],
        ));
        let nodir = d("no/such/dir/s");
        cases.push(case(
            SKD_BIND,
            os(&[opt, &nodir, "true"]),
            111,
            &[&format!(
                "unable to bind to {nodir}: No such file or directory"
            )],
        ));
        cases.push(case(SKD_BIND, os(&[opt]), 100, &["missing argument", opt]));
    }
    cases.push(case(
        SKD_BIND,
        os(&["cat"]),
        100,
        &["no socket address given"],
    ));
    cases.push(case(
        SKD_BIND,
        os(&["-t", "0", "-l", &d("s"), "true"]),
        100,
        &["only one socket address"],
    ));
    cases.push(case(
        SKD_BIND,
        os(&["-l", &d("s"), "-u", "0", "true"]),
        100,
        &["only one socket address"],
    ));

    // The next program cannot be run: the socket file just made is not
    // left behind.
    for (prog, code, why) in [
        ("/nonexistent", 127, "No such file or directory"),
        ("/etc/passwd", 126, "Permission denied"),
    ] {
        cases.push(case(
            SKD_BIND,
            os(&["-l", &d("s"), prog]),
            code,
            &[&format!("unable to exec {prog}: {why}")],
        ));
    }

    // Servers given something other than their socket on stdin.
    for (tool, stdin, what) in [
        (
            SKD_ACCEPT,
            Stdin::Null,
            "stdin is not a listening stream socket",
        ),
        (
            SKD_ACCEPT,
            Stdin::RegularFile,
            "stdin is not a listening stream socket",
        ),
        (
            SKD_ACCEPT,
            Stdin::Datagram,
            "stdin is not a listening stream socket",
        ),
        (SKD_DGRAM, Stdin::Null, "stdin is not a datagram socket"),
        (
            SKD_DGRAM,
            Stdin::RegularFile,
            "stdin is not a datagram socket",
        ),
        (
            SKD_DGRAM,
            Stdin::StreamListener,
            "stdin is not a datagram socket",
        ),
    ] {
        let mut c = case(tool, os(&["cat"]), 100, &[what]);
        c.stdin = stdin;
        cases.push(c);
    }

    // Log destinations, alone and through the classic front end, which
    // must refuse them before anything (a socket, a pidfile) is made.
    let pidfile = d("p");
    for (spec, says) in [
        ("tag:bogus.info", "unknown syslog facility \"bogus\""),
        ("tag:daemon.bogus", "unknown syslog priority \"bogus\""),
        ("tag:daemon", "invalid syslog level \"daemon\""),
        ("tag:", "invalid syslog level \"\""),
        ("tag:.", "unknown syslog facility \"\""),
        (":daemon.info", "no syslog tag given"),
        ("", "no syslog tag given"),
        (">", "no file name after '>'"),
        (">>  ", "no file name after '>'"),
    ] {
        cases.push(case(SKD_LOG, os(&[spec, "true"]), 100, &[says]));
        cases.push(case(SKD_LOG, os(&["-U", spec, "true"]), 100, &[says]));
        cases.push(case(
            SKD,
            os(&["-l", &unix, "-P", &pidfile, "-L", spec, "true"]),
            100,
            &[says],
        ));
    }
    let nodir = d("no/such/dir/log");
    cases.push(case(
        SKD_LOG,
        os(&[&format!(">{nodir}"), "true"]),
        111,
        &[&format!(
            "unable to open {nodir}: No such file or directory"
        )],
    ));
    cases.push(case(SKD, os(&["-L"]), 100, &["missing argument", "'-L'"]));
    cases.push(case(
        SKD,
        os(&["-l", &unix, "-P", "", "true"]),
        100,
        &["the pidfile name is empty"],
    ));
    cases.push(case(SKD, os(&["-P"]), 100, &["missing argument", "'-P'"]));
    cases.push(case(
        SKD,
        os(&["-S", "-l", &unix, "true"]),
        100,
        &["-S supervises"],
    ));

    // Privileges: the variables skd-setuid, skd-log -U and skd -U read,
    // checked by the classic front end before the chain starts.
    for (env, says) in [
        (&[][..], "UID is not set"),
        (&[("UID", "1")][..], "GID is not set"),
        (
            &[("UID", "nobody"), ("GID", "1")][..],
            "invalid UID: \"nobody\"",
        ),
        (&[("UID", "-1"), ("GID", "1")][..], "invalid UID: \"-1\""),
        (
            &[("UID", "4294967295"), ("GID", "1")][..],
            "invalid UID: \"4294967295\"",
        ),
        (&[("UID", "99999999999"), ("GID", "1")][..], "invalid UID"),
        (&[("UID", "1"), ("GID", "")][..], "invalid GID: \"\""),
        (
            &[("UID", "1"), ("GID", "1"), ("GIDLIST", "1,,2")][..],
            "invalid GIDLIST",
        ),
        (
            &[("UID", "1"), ("GID", "1"), ("ROOT", "")][..],
            "ROOT is set but empty",
        ),
    ] {
        cases.push(with_env(case(SKD_SETUID, os(&["true"]), 100, &[says]), env));
        cases.push(with_env(
            case(SKD_LOG, os(&["-U", "tag", "true"]), 100, &[says]),
            env,
        ));
        cases.push(with_env(
            case(
                SKD,
                os(&["-U", "-l", &unix, "-P", &pidfile, "-L", "tag", "true"]),
                100,
                &[says],
            ),
            env,
        ));
    }

    // Pidfiles.
    cases.push(case(
        SKD_PIDFILE,
        os(&["", "true"]),
        100,
        &["the pidfile name is empty"],
    ));
    cases.push(case(
        SKD_PIDFILE,
        os(&[&d("p")]),
        100,
        &["no program to run"],
    ));
    let nodir = d("no/such/dir/p");
    cases.push(case(
        SKD_PIDFILE,
        os(&[&nodir, "true"]),
        111,
        &[&format!(
            "unable to open {nodir}: No such file or directory"
        )],
    ));
    cases
}

/// Runs one case in `dir` (its working directory) and checks it.
fn check(dir: &Path, c: &Case) {
    let shown = format!("{} {:?}", c.tool.rsplit('/').next().unwrap(), c.args);
    let mut command = std::process::Command::new(c.tool);
    command.args(&c.args).current_dir(dir);
    for name in ["UID", "GID", "GIDLIST", "ROOT"] {
        command.env_remove(name);
    }
    command.envs(c.env.iter().map(|(k, v)| (k, v)));
    let out = match c.stdin {
        Stdin::Null => run(command),
        other => run_with_stdin(command, other),
    };
    let err = String::from_utf8_lossy(&out.stderr);
    let name = c.tool.rsplit('/').next().unwrap();
    assert_eq!(out.status.code(), Some(c.code), "{shown}: {err}");
    assert_eq!(out.stdout, b"", "{shown}: something on stdout");
    assert_eq!(err.lines().count(), 1, "{shown}: {err}");
    // No final period (the synopsis may end in an ellipsis).
    assert!(err.ends_with('\n'), "{shown}: {err}");
    assert!(
        !err.ends_with(".\n") || err.ends_with("...\n"),
        "{shown}: {err}"
    );
    assert!(
        err.starts_with(&format!("{name}: fatal: ")),
        "{shown}: {err}"
    );
    for text in &c.says {
        assert!(err.contains(text.as_str()), "{shown}: {err} lacks {text:?}");
    }
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "stdin")
        .collect();
    assert!(left.is_empty(), "{shown}: left behind {left:?}");
}

/// `run`, with stdin a socket of the given kind (or a regular file).
fn run_with_stdin(mut command: std::process::Command, stdin: Stdin) -> std::process::Output {
    let stdin: Stdio = match stdin {
        Stdin::StreamListener => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            std::os::fd::OwnedFd::from(l).into()
        }
        Stdin::Datagram => {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            std::os::fd::OwnedFd::from(s).into()
        }
        Stdin::RegularFile => std::fs::File::open("/etc/passwd").unwrap().into(),
        Stdin::Null => Stdio::null(),
    };
    command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("spawn");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            signal(pid, 9);
            panic!("command did not finish within {TIMEOUT:?}");
        }
    }
}

#[test]
fn every_bad_input_gives_one_line_the_right_status_and_leaves_nothing() {
    let dir = TempDir::new();
    let cases = table(&dir.0);
    assert!(cases.len() > 300, "{} cases", cases.len());
    for c in &cases {
        check(&dir.0, c);
    }
    println!("{} bad command lines tried", cases.len());
}
