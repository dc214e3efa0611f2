//! fulfill: resend, fetch, validate and import SoftLayer SSL fulfillment emails.
//!
//! The modules follow `shared/design.md`: `extract`, `validate` and `keys` are pure (bytes
//! and `now` in); `store` does the I/O; `commands` are short scripts over them. The binary
//! in `main.rs` only parses arguments and maps results to exit codes.

pub mod cli;
pub mod commands;
pub mod config;
pub mod extract;
pub mod keys;
pub mod mailbox;
pub mod pipeline;
pub mod portal;
pub mod secret;
pub mod store;
pub mod validate;
