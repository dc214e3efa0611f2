//! `fulfill orders`: the account's SSL orders, where the CA mails them, and whether
//! fulfill has a certificate for each.

use std::io::{self, Write};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::{Context, Report, Table, connect_portal};
use crate::exit::Exit;
use crate::pipeline::in_use::{Asking, InUse, ListenerLookup, where_in_use};
use crate::pipeline::pending::{Assessed, Pendency, assess_orders};
use crate::portal::types::SslOrder;
use crate::store::{RunLock, Store, timestamp};

#[derive(Debug, Args)]
pub struct OrdersArgs {}

#[derive(Serialize)]
struct OrderLine {
    id: i64,
    common_name: Option<String>,
    status: Option<String>,
    status_id: Option<i64>,
    created: Option<String>,
    expires: Option<String>,
    /// Where the CA sends the fulfillment email (the order's approver address).
    approver_email: Option<String>,
    technical_contact_email: Option<String>,
    /// The `certificates` row fulfill holds for this order, if any.
    imported_certificate_id: Option<i64>,
    /// Whether `resend-and-import --all-pending` works on it.
    pending: bool,
    /// Why it is pending or not (`reason` names the case, in snake case).
    pendency: Pendency,
    /// In words, for a person.
    pending_reason: String,
    /// When the next resend is due, for a pending order that waits for it.
    next_resend: Option<String>,
    /// The load balancer listeners that use its certificate (`null`: it has none in the
    /// portal's store).
    in_use: Option<InUse>,
}

impl OrdersArgs {
    pub fn execute(&self, context: &Context) -> anyhow::Result<Exit> {
        let portal = connect_portal(&context.settings)?;
        let account = portal.account_id().context("finding the account id")?;
        let orders = portal
            .ssl_orders(account)
            .context("listing the SSL orders")?;
        let store = Store::open_read_only(&context.settings.database)?;
        let assessed = assess_orders(
            &portal,
            store.as_ref(),
            &orders,
            context.settings.resend_cooldown,
            context.now,
        )?;
        link_orders(context, &orders, &assessed);
        let mut lookup = ListenerLookup::new(&portal);
        let lines: Vec<OrderLine> = (orders.iter().zip(assessed))
            .map(|(order, assessed)| OrderLine {
                in_use: (assessed.portal_certificate_id()).map(|portal_id| {
                    let asking = Asking::Portal(&mut lookup);
                    where_in_use(asking, store.as_ref(), assessed.recorded, Some(portal_id))
                }),
                id: order.id,
                common_name: order.common_name.clone(),
                status: assessed.status,
                status_id: order.status_id,
                created: order.create_date.clone(),
                expires: order.expiration_date.clone(),
                approver_email: order.approver_email_address.clone(),
                technical_contact_email: order.technical_contact_email_address.clone(),
                imported_certificate_id: assessed.recorded,
                pending: assessed.pendency.is_pending(),
                pending_reason: assessed.pendency.why(),
                next_resend: assessed.pendency.next_resend().map(timestamp),
                pendency: assessed.pendency,
            })
            .collect();
        context.output.print(&OrdersReport(lines))?;
        Ok(Exit::Done)
    }
}

/// Certificates recorded without their order (imported when no portal could say whose
/// they were) are tied to it now, so that `list` and `show` name the order `orders` shows.
/// A small write in a command that reads: it is skipped while another run holds the lock
/// (that run ties them itself), and a failure is only a warning.
fn link_orders(context: &Context, orders: &[SslOrder], assessed: &[Assessed]) {
    let database = &context.settings.database;
    let unlinked = || (orders.iter().zip(assessed)).filter_map(|(o, a)| Some((a.recorded?, o.id)));
    if unlinked().next().is_none() || !database.exists() {
        return;
    }
    let Ok(_lock) = RunLock::acquire(database) else {
        return;
    };
    let linked = Store::open(database).and_then(|store| {
        unlinked()
            .try_for_each(|(certificate, order)| store.link_order(certificate, order, context.now))
    });
    if let Err(error) = linked {
        log::warn!(
            "cannot tie certificates to their orders in {}: {error}",
            database.display()
        );
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct OrdersReport(Vec<OrderLine>);

impl Report for OrdersReport {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.0.is_empty() {
            return writeln!(out, "The account has no SSL orders.");
        }
        let dash = || "-".to_string();
        let mut table = Table::new(&[
            "ORDER",
            "COMMON NAME",
            "STATUS",
            "CREATED",
            "EXPIRES",
            "MAILED TO",
            "IMPORTED",
            "PENDING",
            "IN USE",
        ]);
        for line in &self.0 {
            table.row(vec![
                line.id.to_string(),
                line.common_name.clone().unwrap_or_else(dash),
                line.status.clone().unwrap_or_else(dash),
                line.created.as_deref().map(day).unwrap_or_else(dash),
                line.expires.as_deref().map(day).unwrap_or_else(dash),
                line.approver_email.clone().unwrap_or_else(dash),
                line.imported_certificate_id
                    .map(|id| format!("yes (#{id})"))
                    .unwrap_or_else(|| "no".into()),
                match line.pending {
                    true => format!("yes: {}", line.pending_reason),
                    false => format!("no: {}", line.pending_reason),
                },
                in_use_cell(line.in_use.as_ref()),
            ]);
        }
        table.write(out)
    }
}

/// How many listeners use the order's certificate: "-" when it is not in the portal's
/// store, "?" when the portal could not say.
fn in_use_cell(in_use: Option<&InUse>) -> String {
    match in_use.map(InUse::live_count) {
        None => "-".into(),
        Some(None) => "?".into(),
        Some(Some(count)) => count.to_string(),
    }
}

/// The date part of the API's ISO 8601 timestamps ("2016-01-20T10:56:44-06:00").
fn day(timestamp: &str) -> String {
    timestamp.chars().take(10).collect()
}
