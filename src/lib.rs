//! fulfill: resend, fetch, validate and import SoftLayer SSL fulfillment emails.
//!
//! The modules follow `shared/design.md`: `extract`, `validate` and `keys` are pure (bytes
//! and `now` in); `store` does the I/O; `commands` are short scripts over them. The binary
//! in `main.rs` only parses arguments and maps results to exit codes. Without the default
//! `cli` feature only the pure core is built (the fuzz targets use that).

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod commands;
#[cfg(feature = "cli")]
pub mod config;
pub mod extract;
pub mod keys;
#[cfg(feature = "cli")]
pub mod mailbox;
#[cfg(feature = "cli")]
pub mod pipeline;
#[cfg(feature = "cli")]
pub mod portal;
#[cfg(feature = "cli")]
pub mod secret;
#[cfg(feature = "cli")]
pub mod store;
pub mod validate;
