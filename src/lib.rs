//! skd: small chain-loading programs for running network services the
//! daemontools way. Each tool does one step and execs the next program.
//! The binaries in `src/bin` are glue over this library.

pub mod accept;
pub mod activation;
pub mod addr;
pub mod args;
pub mod background;
pub mod bind;
pub mod chain;
pub mod classic;
pub mod dgram;
pub mod error;
pub mod handler;
pub mod log;
pub mod multicall;
pub mod notify;
pub mod pidfile;
pub mod serve;
pub mod setuid;
pub mod supervise;
pub mod sys;
pub mod syslog;
