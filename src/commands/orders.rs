//! `fulfill orders`: the account's SSL orders, where the CA mails them, and whether
//! fulfill has a certificate for each.

use std::io;

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;

use super::{Exit, Table, connect_portal, print_json};
use crate::config::Settings;
use crate::keys::{self, KeyMaterial, PublicKeyId};
use crate::portal::types::{RequestStatus, SslOrder};
use crate::store::Store;

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
}

pub fn run(settings: &Settings, json: bool, _now: OffsetDateTime) -> anyhow::Result<Exit> {
    let portal = connect_portal(settings)?;
    let account = portal.account_id().context("finding the account id")?;
    let orders = portal
        .ssl_orders(account)
        .context("listing the SSL orders")?;
    // Ask for the status names only when the mask did not bring them.
    let statuses = if orders
        .iter()
        .any(|o| status_name(o, &[]).is_none() && o.status_id.is_some())
    {
        portal
            .request_statuses()
            .context("reading the order status names")?
    } else {
        Vec::new()
    };
    let certificates = match Store::open_read_only(&settings.database)? {
        Some(store) => store.list_certificates(None)?,
        None => Vec::new(),
    };
    let certificate_keys: Vec<(i64, Option<i64>, Option<PublicKeyId>)> = certificates
        .iter()
        .map(|row| (row.id, row.order_id, crate::pipeline::certificate_key(row)))
        .collect();

    let lines: Vec<OrderLine> = orders
        .iter()
        .map(|order| {
            let csr_key = order
                .certificate_signing_request
                .as_deref()
                .and_then(|csr| keys::read_key_material(csr.as_bytes()).ok())
                .and_then(|m| m.into_iter().next())
                .map(|m: KeyMaterial| m.key().clone());
            let imported = certificate_keys
                .iter()
                .find(|(_, order_id, key)| {
                    *order_id == Some(order.id)
                        || (csr_key.is_some() && key.as_ref() == csr_key.as_ref())
                })
                .map(|(id, _, _)| *id);
            OrderLine {
                id: order.id,
                common_name: order.common_name.clone(),
                status: status_name(order, &statuses),
                status_id: order.status_id,
                created: order.create_date.clone(),
                expires: order.expiration_date.clone(),
                approver_email: order.approver_email_address.clone(),
                technical_contact_email: order.technical_contact_email_address.clone(),
                imported_certificate_id: imported,
            }
        })
        .collect();

    if json {
        print_json(&lines)?;
        return Ok(Exit::Done);
    }
    let mut out = io::stdout().lock();
    if lines.is_empty() {
        use std::io::Write;
        writeln!(out, "The account has no SSL orders.")?;
        return Ok(Exit::Done);
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
    ]);
    for line in &lines {
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
        ]);
    }
    table.write(&mut out)?;
    Ok(Exit::Done)
}

fn status_name(order: &SslOrder, statuses: &[RequestStatus]) -> Option<String> {
    order
        .status
        .as_ref()
        .and_then(|s| s.name.clone())
        .or_else(|| {
            let id = order.status_id?;
            statuses
                .iter()
                .find(|s| s.id == id)
                .and_then(|s| s.name.clone())
        })
}

/// The date part of the API's ISO 8601 timestamps ("2016-01-20T10:56:44-06:00").
fn day(timestamp: &str) -> String {
    timestamp.chars().take(10).collect()
}
