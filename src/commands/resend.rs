//! `fulfill resend --order ID`: ask the CA, through the portal, to send the fulfillment
//! email again. Like the portal's confirmation window it first says where the mail will go.

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::{Context, Report, connect_portal, lock_for_writing, write_line};
use crate::exit::Exit;
use crate::pipeline::resend_loop::request_resend;
use crate::store::{Store, timestamp};
use crate::text::printable;

#[derive(Debug, Args)]
pub struct ResendArgs {
    /// The SoftLayer order (see `fulfill orders`)
    #[arg(long, value_name = "ID")]
    pub order: i64,

    /// Do not ask for confirmation (it is never asked when stdin is not a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Serialize)]
struct ResendResult {
    order_id: i64,
    common_name: Option<String>,
    sent_to: Option<String>,
    requested: bool,
    requested_at: Option<String>,
}

impl Report for ResendResult {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        write_line(
            out,
            &format!(
                "Fulfillment email requested for order {} ({}); the CA mails {}.",
                self.order_id,
                self.common_name.as_deref().unwrap_or("(no common name)"),
                self.sent_to
                    .as_deref()
                    .unwrap_or("the order's domain administrator"),
            ),
        )
    }
}

impl ResendArgs {
    pub fn execute(&self, context: &Context) -> anyhow::Result<Exit> {
        let settings = &context.settings;
        let now = context.now;
        let json = context.output.json;
        let _lock = lock_for_writing(settings, false)?;
        let portal = connect_portal(settings)?;
        let order = portal
            .ssl_order(self.order)
            .with_context(|| format!("reading order {}", self.order))?;
        let name = order
            .common_name
            .clone()
            .unwrap_or_else(|| "(no common name)".into());
        // The CA mails the domain administrator given at order time (docs/softlayer-api.md §1.2).
        let sent_to = order
            .approver_email_address
            .clone()
            .or_else(|| order.technical_contact_email_address.clone());
        let recipient = sent_to
            .clone()
            .unwrap_or_else(|| "the order's domain administrator".into());

        if !json {
            eprintln!(
                "{}",
                printable(&format!(
                    "The CA will send the fulfillment email for {name} (order {}) to {recipient}.",
                    order.id
                ))
            );
        }
        // Ask only a person at a terminal; cron and scripts (stdin not a terminal) go on.
        if !self.yes && io::stdin().is_terminal() && !confirm("Send it? [y/N] ")? {
            eprintln!("Not sent.");
            return Ok(Exit::Done);
        }

        let store = Store::open(&settings.database)?;
        if let Err(error) = request_resend(&portal, &store, &order, now)? {
            let what = if error.outcome_unknown() {
                format!(
                    "no definite answer to the resend of order {} ({name}): it may have gone \
                     through, so its time is kept and resend-and-import does not resend before \
                     resend_cooldown has passed",
                    order.id
                )
            } else {
                format!(
                    "the portal refused to resend the fulfillment email of order {} ({name})",
                    order.id
                )
            };
            return Err(anyhow::Error::new(error).context(what));
        }

        context.output.print(&ResendResult {
            order_id: order.id,
            common_name: order.common_name,
            sent_to,
            requested: true,
            requested_at: Some(timestamp(now)),
        })?;
        Ok(Exit::Done)
    }
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    let mut stderr = io::stderr().lock();
    write!(stderr, "{question}")?;
    stderr.flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
