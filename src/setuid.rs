//! skd-setuid: chroot to `$ROOT` when it is set, drop to the groups, gid
//! and uid in `$GIDLIST`, `$GID` and `$UID`, check that root cannot be
//! regained, and exec the next program.
//!
//! The variables are the daemontools/s6 ones (`envuidgid`,
//! `s6-envuidgid` set them), plus skd's `$ROOT`. They are left in the
//! environment for the next program.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::chain::{self, Env};
use crate::error::{self, Error};
use crate::{args, sys};

pub const PROG: &str = "skd-setuid";
pub const SYNOPSIS: &str = "skd-setuid prog...";

/// The largest id we accept: `(uid_t)-1` means "no change" to the kernel.
pub const MAX_ID: u32 = u32::MAX - 1;

/// Whom to become, from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    /// The supplementary groups: `$GIDLIST` when set, else just `gid`.
    pub groups: Vec<u32>,
    /// `$ROOT`: the directory to chroot to first.
    pub root: Option<OsString>,
}

/// Whether `apply` also enters `$ROOT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    Enter,
    Ignore,
}

impl Creds {
    /// Reads `$UID`, `$GID`, `$GIDLIST` and `$ROOT`. Pure: no system call.
    pub fn from_env(env: &Env) -> Result<Creds, Error> {
        let uid = id("UID", env.get("UID"))?;
        let gid = id("GID", env.get("GID"))?;
        let groups = match env.get("GIDLIST") {
            Some(list) => gid_list(list)?,
            None => vec![gid],
        };
        let root = match env.get("ROOT") {
            Some(root) if root.is_empty() => {
                return Err(Error::usage("ROOT is set but empty"));
            }
            Some(root) => Some(root.to_owned()),
            None => None,
        };
        Ok(Creds {
            uid,
            gid,
            groups,
            root,
        })
    }
}

fn id(name: &str, value: Option<&OsStr>) -> Result<u32, Error> {
    let value = value.ok_or_else(|| Error::usage(format!("{name} is not set")))?;
    parse_id(value.as_bytes()).ok_or_else(|| {
        Error::usage(format!(
            "invalid {name}: \"{}\" (must be an integer from 0 to {MAX_ID})",
            value.to_string_lossy()
        ))
    })
}

/// A plain decimal id: digits only, at most `MAX_ID`.
fn parse_id(text: &[u8]) -> Option<u32> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text)
        .ok()?
        .parse::<u32>()
        .ok()
        .filter(|&n| n <= MAX_ID)
}

/// `$GIDLIST`: comma-separated gids; empty means no supplementary group.
fn gid_list(value: &OsStr) -> Result<Vec<u32>, Error> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .as_bytes()
        .split(|&b| b == b',')
        .map(parse_id)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            Error::usage(format!(
                "invalid GIDLIST: \"{}\" (must be comma-separated integers from 0 to {MAX_ID})",
                value.to_string_lossy()
            ))
        })
}

/// Drops privileges: chroot to `root` (with `Root::Enter`), then
/// setgroups, setgid, setuid, in that order, then checks the result.
pub fn apply(creds: &Creds, root: Root) -> Result<(), Error> {
    if let (Root::Enter, Some(dir)) = (root, &creds.root) {
        let shown = dir.to_string_lossy();
        std::env::set_current_dir(dir)
            .map_err(|e| Error::sys(format_args!("chdir to {shown}"), &e))?;
        // chroot(".") after chdir: the directory we are in, not whatever
        // the path names by now.
        std::os::unix::fs::chroot(".")
            .map_err(|e| Error::sys(format_args!("chroot to {shown}"), &e))?;
        std::env::set_current_dir("/")
            .map_err(|e| Error::sys(format_args!("chdir to / in {shown}"), &e))?;
    }
    sys::setgroups(&creds.groups).map_err(|e| Error::sys("set the supplementary groups", &e))?;
    sys::setgid(creds.gid).map_err(|e| Error::sys(format_args!("setgid to {}", creds.gid), &e))?;
    sys::setuid(creds.uid).map_err(|e| Error::sys(format_args!("setuid to {}", creds.uid), &e))?;
    verify(creds)
}

/// Checks that the ids are what we asked for everywhere (real, effective
/// and saved) and, for a user other than root, that root is gone for good.
fn verify(creds: &Creds) -> Result<(), Error> {
    let failed =
        |what: String| Error::new(error::SYSTEM, format!("unable to drop privileges: {what}"));
    let (uid, gid) = (creds.uid, creds.gid);
    if sys::getresuid() != (uid, uid, uid) {
        return Err(failed(format!("the user ids are not all {uid}")));
    }
    if sys::getresgid() != (gid, gid, gid) {
        return Err(failed(format!("the group ids are not all {gid}")));
    }
    let mut have = sys::getgroups().map_err(|e| Error::sys("read the groups", &e))?;
    let mut want = creds.groups.clone();
    have.sort_unstable();
    have.dedup();
    want.sort_unstable();
    want.dedup();
    if have != want {
        return Err(failed(
            "the supplementary groups are not the ones asked for".into(),
        ));
    }
    if uid != 0 && sys::setuid(0).is_ok() {
        return Err(failed("setuid(0) still succeeds".into()));
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub argv: Vec<OsString>,
}

/// No options of our own: everything from the first operand is the next
/// program (a leading `--` is skipped).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, Error> {
    Ok(Options {
        argv: args::program_only(args, SYNOPSIS)?,
    })
}

pub fn main() -> ! {
    error::run(PROG, || {
        let env = chain::start();
        let opts = parse(std::env::args_os().skip(1))?;
        let creds = Creds::from_env(&env)?;
        apply(&creds, Root::Enter)?;
        Err(chain::exec(&opts.argv, env))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        let mut env = Env::default();
        for (k, v) in vars {
            env.set(k, *v);
        }
        env
    }

    fn creds(vars: &[(&str, &str)]) -> Result<Creds, Error> {
        Creds::from_env(&env(vars))
    }

    #[test]
    fn uid_and_gid_make_the_only_group_the_gid() {
        let c = creds(&[("UID", "65534"), ("GID", "100")]).unwrap();
        assert_eq!(
            c,
            Creds {
                uid: 65534,
                gid: 100,
                groups: vec![100],
                root: None
            }
        );
    }

    #[test]
    fn gidlist_and_root() {
        let c = creds(&[
            ("UID", "1"),
            ("GID", "2"),
            ("GIDLIST", "2,100,7"),
            ("ROOT", "/srv/jail"),
        ])
        .unwrap();
        assert_eq!(c.groups, [2, 100, 7]);
        assert_eq!(c.root, Some("/srv/jail".into()));
        let c = creds(&[("UID", "1"), ("GID", "2"), ("GIDLIST", "")]).unwrap();
        assert!(c.groups.is_empty(), "an empty GIDLIST means no groups");
        let c = creds(&[("UID", "0"), ("GID", "4294967294"), ("GIDLIST", "0")]).unwrap();
        assert_eq!((c.uid, c.gid, c.groups), (0, MAX_ID, vec![0]));
    }

    #[test]
    fn bad_variables_are_usage_errors() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("GID", "1")], "UID is not set"),
            (&[("UID", "1")], "GID is not set"),
            (&[], "UID is not set"),
            (&[("UID", ""), ("GID", "1")], "invalid UID: \"\""),
            (&[("UID", "x"), ("GID", "1")], "invalid UID: \"x\""),
            (&[("UID", "-1"), ("GID", "1")], "invalid UID"),
            (&[("UID", "+1"), ("GID", "1")], "invalid UID"),
            (&[("UID", " 1"), ("GID", "1")], "invalid UID"),
            (&[("UID", "4294967295"), ("GID", "1")], "invalid UID"),
            (&[("UID", "99999999999"), ("GID", "1")], "invalid UID"),
            (&[("UID", "1"), ("GID", "0x10")], "invalid GID: \"0x10\""),
            (
                &[("UID", "1"), ("GID", "1"), ("GIDLIST", "1,,2")],
                "invalid GIDLIST: \"1,,2\"",
            ),
            (
                &[("UID", "1"), ("GID", "1"), ("GIDLIST", ",")],
                "invalid GIDLIST",
            ),
            (
                &[("UID", "1"), ("GID", "1"), ("GIDLIST", "1 2")],
                "invalid GIDLIST",
            ),
            (
                &[("UID", "1"), ("GID", "1"), ("GIDLIST", "a")],
                "invalid GIDLIST",
            ),
            (
                &[("UID", "1"), ("GID", "1"), ("ROOT", "")],
                "ROOT is set but empty",
            ),
        ];
        for (vars, text) in cases {
            let err = creds(vars).unwrap_err();
            assert_eq!(err.code, 100, "{vars:?}");
            assert!(err.msg.starts_with(text), "{vars:?}: {}", err.msg);
        }
    }

    #[test]
    fn everything_is_the_program() {
        let p = |a: &[&str]| parse(a.iter().map(OsString::from));
        assert_eq!(p(&["id", "-u"]).unwrap().argv, ["id", "-u"]);
        assert_eq!(p(&["--", "-x"]).unwrap().argv, ["-x"]);
        assert_eq!(p(&[]).unwrap_err().code, 100);
        assert_eq!(p(&["-x", "id"]).unwrap_err().code, 100);
    }
}
