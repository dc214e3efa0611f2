//! fulfill: resend, fetch, validate and import SoftLayer SSL fulfillment emails.
//!
//! The layers of docs/architecture.md: `extract`, `validate` and `keys` are pure (bytes
//! and `now` in); `portal`, `mailbox` and `store` do the I/O; `pipeline` chains them;
//! `commands` are short scripts over the pipeline. The binary in `main.rs` only parses
//! arguments, resolves the settings and maps results to exit codes. Without the default
//! `cli` feature only the pure core is built (the fuzz targets use that).

#[cfg(feature = "cli")]
mod child;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod commands;
#[cfg(feature = "cli")]
pub mod config;
#[cfg(feature = "cli")]
pub mod exit;
pub mod extract;
#[cfg(feature = "cli")]
pub mod http;
pub mod keys;
#[cfg(feature = "cli")]
pub mod mailbox;
#[cfg(feature = "cli")]
pub mod metrics;
#[cfg(feature = "cli")]
pub mod pipeline;
#[cfg(feature = "cli")]
pub mod portal;
#[cfg(feature = "cli")]
pub mod progress;
#[cfg(feature = "cli")]
pub mod secret;
#[cfg(feature = "cli")]
pub mod secrets_manager;
#[cfg(feature = "cli")]
pub mod store;
pub mod text;
pub mod validate;
