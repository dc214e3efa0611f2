//! `fulfill resend-and-import (--order ID... | --all-pending)`: the whole loop, for cron.
//! One run at a time (a kernel lock beside the database; a second run exits 75), quiet with
//! `-q` when there is nothing to do, one line per order otherwise.

use std::io::{self, Write};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::{
    Context, IntoService, Report, connect_portal, deploy_hook, import_checks, load_known_keys,
    lock_for_writing, open_store, replace_allowance, start_watchdog, write_line,
};
use crate::exit::{Exit, UsageError};
use crate::mailbox::Session;
use crate::pipeline::keys_for_orders;
use crate::pipeline::pending::{assess_orders, record_from_portal};
use crate::pipeline::resend_loop::{LoopOptions, OrderOutcome, OrderResult, ResendLoop};
use crate::portal::Portal;
use crate::portal::types::SslOrder;
use crate::store::Store;
use crate::text::printable;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["order", "all_pending"])))]
pub struct ResendAndImportArgs {
    /// An order to complete (repeatable)
    #[arg(long, value_name = "ID")]
    pub order: Vec<i64>,

    /// Every order in the portal without an imported certificate
    #[arg(long)]
    pub all_pending: bool,

    /// How long to wait for the mails
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = crate::config::parse_duration)]
    pub timeout: std::time::Duration,

    /// Do not ask the CA to resend; only wait for the mail
    #[arg(long)]
    pub no_resend: bool,

    /// Read everything, write nothing: no resend, no upload, no database change, no mailbox flag
    #[arg(long)]
    pub dry_run: bool,

    /// Run for each new certificate, with its PEM on stdin and its files named in the
    /// environment (overrides deploy_hook)
    #[arg(long, value_name = "CMD")]
    pub deploy_hook: Option<String>,
}

impl ResendAndImportArgs {
    pub fn execute(&self, context: &Context) -> anyhow::Result<Exit> {
        let settings = &context.settings;
        let _lock = lock_for_writing(settings, self.dry_run)?;
        // Before the mailbox settings: they run password_cmd or oauth2_token_cmd.
        start_watchdog(
            self.timeout + settings.run_timeout() + replace_allowance(settings),
            "--timeout plus [mailbox] run_timeout (plus [portal] replace_timeout)",
        );
        let mailbox = settings.mailbox()?.ok_or_else(|| {
            UsageError(
                "resend-and-import needs a mailbox: set [mailbox] host, username and password_cmd"
                    .into(),
            )
        })?;
        let portal = connect_portal(settings)?;
        let mut store = open_store(settings, self.dry_run)?;
        let orders = self.orders(&portal, store.as_mut(), context)?;
        let keys = keys_for_orders(&orders, load_known_keys(settings, &[])?);
        let checks = import_checks(settings, None, keys)?;
        let mut session = Session::connect(&mailbox).with_context(|| {
            format!(
                "connecting to the mailbox {}:{}",
                mailbox.host, mailbox.port
            )
        })?;
        let hook = deploy_hook(settings, self.deploy_hook.as_deref()).filter(|_| !self.dry_run);
        let mut resend_loop = ResendLoop {
            portal: &portal,
            session: &mut session,
            mailbox: &mailbox,
            account: mailbox.account(),
            checks,
            store: store.as_mut(),
            options: self.loop_options(context, hook.is_some()),
            mark_failures: Vec::new(),
        };
        let mut results = resend_loop.run(&orders, context.now)?;
        // Each was logged as it happened; the mails are recorded, their marks pending.
        let marks_failed = !resend_loop.mark_failures.is_empty();
        session.logout();
        let into_service = IntoService::run(
            settings,
            hook.as_ref(),
            Some(&portal),
            store.as_ref(),
            self.dry_run,
            context.now,
        )?;
        (results.iter_mut()).for_each(|r| into_service.attach_to_order(r));
        let exit = (results.iter()).fold(Exit::Done, |exit, r| exit.worst(r.outcome.exit()));
        let exit = if marks_failed {
            exit.worst(Exit::Failure)
        } else {
            exit
        };
        context.output.print(&OrdersReport {
            results: &results,
            into_service: &into_service,
        })?;
        Ok(into_service.exit(exit))
    }

    /// The orders named with `--order`, or with `--all-pending` the pending orders of the
    /// account (`pipeline::pending`). An order whose certificate turns out to be in the
    /// portal's store already is recorded with its portal id, and not worked on.
    fn orders(
        &self,
        portal: &Portal,
        mut store: Option<&mut Store>,
        context: &Context,
    ) -> anyhow::Result<Vec<SslOrder>> {
        if !self.all_pending {
            return (self.order.iter())
                .map(|id| {
                    portal
                        .ssl_order(*id)
                        .with_context(|| format!("reading order {id} from the portal"))
                })
                .collect();
        }
        let account = portal.account_id().context("finding the portal account")?;
        let orders = portal
            .ssl_orders(account)
            .context("listing the SSL orders")?;
        let (cooldown, now) = (context.settings.resend_cooldown, context.now);
        let assessed = assess_orders(portal, store.as_deref(), &orders, cooldown, now)?;
        let mut pending = Vec::new();
        for (order, assessed) in orders.into_iter().zip(assessed) {
            // A dry run reads the database only, and records nothing.
            let writable = store.as_deref_mut().filter(|_| !self.dry_run);
            if let (Some(found), Some(store)) = (&assessed.in_portal, writable) {
                let deploy = deploy_hook(&context.settings, self.deploy_hook.as_deref()).is_some();
                let id = record_from_portal(store, &order, found, deploy, now)?;
                log::info!(
                    "order {}: its certificate is in the portal store ({}); recorded as #{id}, not resent",
                    order.id,
                    found.id
                );
            }
            if assessed.pendency.is_pending() {
                pending.push(order);
            } else {
                log::debug!(
                    "order {}: not pending: {}",
                    order.id,
                    assessed.pendency.why()
                );
            }
        }
        Ok(pending)
    }

    fn loop_options(&self, context: &Context, deploy: bool) -> LoopOptions {
        let settings = &context.settings;
        LoopOptions {
            resend: !self.no_resend,
            timeout: self.timeout,
            cooldown: settings.resend_cooldown,
            // An order named on the command line is waited for, due or not.
            wait_when_not_due: !self.all_pending,
            dry_run: self.dry_run,
            deploy,
        }
    }
}

/// One line per order; `--json` gives the results as they are.
#[derive(Serialize)]
#[serde(transparent)]
struct OrdersReport<'a> {
    results: &'a [OrderResult],
    /// What was put into service (in `--json`, on each result as `deploy_hook`,
    /// `secrets_manager` and `listeners`).
    #[serde(skip)]
    into_service: &'a IntoService,
}

impl Report for OrdersReport<'_> {
    /// Failures also go to stderr with what to do next.
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.results.is_empty() {
            writeln!(out, "No pending SSL orders.")?;
        }
        for r in self.results {
            write_line(out, &line(r))?;
            if r.outcome == OrderOutcome::Failed {
                let reason = r.reason.as_deref().unwrap_or("failed");
                eprintln!("fulfill: order {}: {}", r.order_id, printable(reason));
            }
        }
        // The certificates of earlier runs, deployed or imported now, have no order line.
        let on_an_order_line =
            |sha256: &str| (self.results.iter()).any(|r| r.sha256.as_deref() == Some(sha256));
        self.into_service.write_text(out, on_an_order_line)
    }

    /// Nothing to say with -q when every order's certificate was already in, or every
    /// pending order waits for its next resend.
    fn is_routine(&self) -> bool {
        self.into_service.is_empty()
            && (self.results.iter()).all(|r| {
                matches!(
                    r.outcome,
                    OrderOutcome::AlreadyImported | OrderOutcome::NotDue
                )
            })
    }
}

fn line(r: &OrderResult) -> String {
    let name = r.common_name.as_deref().unwrap_or("(no common name)");
    let mut line = format!("order {} {name}: {}", r.order_id, r.outcome.words());
    if let Some(id) = r.certificate_id {
        line.push_str(&format!(", certificate #{id}"));
    }
    if let Some(portal) = r.portal_certificate_id {
        line.push_str(&format!(", portal certificate {portal}"));
    }
    if let Some(sha256) = &r.sha256 {
        line.push_str(&format!(" (sha256 {})", &sha256[..16.min(sha256.len())]));
    }
    if r.resent {
        line.push_str("; fulfillment email resent");
    }
    if let Some(hook) = &r.deploy_hook {
        line.push_str(&format!("; deploy hook {hook}"));
    }
    if let Some(secret) = &r.secrets_manager {
        line.push_str(&format!("; Secrets Manager {secret}"));
    }
    if let Some(reason) = &r.reason {
        line.push_str(&format!(": {reason}"));
    }
    line
}
