//! The multicall binary: `skd` is the classic front end, and the same file
//! called `skd-bind`, `skd-accept`, ... (a hard link or a symlink, or an
//! exec with that argv[0]) is that tool. This is what lets a lone installed
//! `skd` run the chains it builds: chain::exec re-execs it under each
//! tool's name.

use std::ffi::OsStr;

use crate::error::{self, Error};
use crate::{accept, background, bind, chain, classic, dgram, log, pidfile, setuid};

/// A tool's entry point.
pub type Main = fn() -> !;

/// The tools built into this binary, by name.
pub const MAINS: &[(&str, Main)] = &[
    ("skd", classic::main),
    ("skd-accept", accept::main),
    ("skd-background", background::main),
    ("skd-bind", bind::main),
    ("skd-dgram", dgram::main),
    ("skd-log", log::main),
    ("skd-pidfile", pidfile::main),
    ("skd-setuid", setuid::main),
];

/// The tool that argv[0] names (its last path component).
pub fn dispatch(argv0: &OsStr) -> Result<Main, Error> {
    let name = chain::tool_name(argv0);
    match MAINS.iter().find(|(tool, _)| Some(*tool) == name) {
        Some((_, main)) => Ok(*main),
        None => {
            let names: Vec<&str> = MAINS.iter().map(|(tool, _)| *tool).collect();
            Err(Error::usage(format!(
                "unknown program name \"{}\": call this program as one of {}",
                argv0.to_string_lossy(),
                names.join(", ")
            )))
        }
    }
}

pub fn main() -> ! {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    match dispatch(&argv0) {
        Ok(main) => main(),
        Err(err) => error::die(classic::PROG, err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(argv0: &str) -> Option<&'static str> {
        let main = dispatch(OsStr::new(argv0)).ok()?;
        MAINS
            .iter()
            .find(|(_, m)| std::ptr::fn_addr_eq(*m, main))
            .map(|(name, _)| *name)
    }

    #[test]
    fn dispatch_is_on_the_base_name() {
        assert_eq!(name_of("skd"), Some("skd"));
        assert_eq!(name_of("/usr/local/bin/skd"), Some("skd"));
        assert_eq!(name_of("skd-bind"), Some("skd-bind"));
        assert_eq!(name_of("../x/skd-accept"), Some("skd-accept"));
    }

    #[test]
    fn every_tool_of_the_chain_is_built_in_and_nothing_else() {
        let names: Vec<&str> = MAINS.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, chain::TOOLS);
        for name in chain::TOOLS {
            assert_eq!(name_of(name), Some(*name));
        }
    }

    #[test]
    fn unknown_names_are_usage_errors() {
        for bad in ["", "skd2", "bind", "skd-bind.old", "/bin/sh"] {
            let err = dispatch(OsStr::new(bad)).err().unwrap();
            assert_eq!(err.code, 100, "{bad}");
            assert!(err.msg.starts_with("unknown program name"), "{}", err.msg);
        }
    }
}
