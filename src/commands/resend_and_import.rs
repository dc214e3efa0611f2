//! `fulfill resend-and-import (--order ID... | --all-pending)`: the whole loop, for cron.
//! One run at a time (a kernel lock beside the database; a second run exits 75), quiet with
//! `-q` when there is nothing to do, one line per order otherwise.

use std::io::{self, Write};

use anyhow::Context;
use time::OffsetDateTime;

use super::{
    Exit, UsageError, connect_portal, import_checks, load_known_keys, open_store, print_json,
};
use crate::cli::ResendAndImportArgs;
use crate::config::Settings;
use crate::mailbox::Session;
use crate::pipeline::order_csr_keys;
use crate::pipeline::orders::{DeployHook, Loop, LoopOptions, OrderOutcome, OrderResult};
use crate::store::{LockError, RunLock};

pub fn run(
    args: &ResendAndImportArgs,
    settings: &Settings,
    json: bool,
    quiet: bool,
    now: OffsetDateTime,
) -> anyhow::Result<Exit> {
    // A dry run writes nothing, not even a lock file.
    let _lock = if args.dry_run {
        None
    } else {
        match RunLock::acquire(&settings.database) {
            Ok(lock) => Some(lock),
            Err(busy @ LockError::Busy { .. }) => {
                eprintln!("fulfill: {busy}");
                return Ok(Exit::Locked);
            }
            Err(other) => return Err(other.into()),
        }
    };
    let mailbox = settings.mailbox()?.ok_or_else(|| {
        UsageError(
            "resend-and-import needs a mailbox: set [mailbox] host, username and password_cmd"
                .into(),
        )
    })?;
    // Never hang a cron slot, whatever blocks.
    let limit = args.timeout + mailbox.run_timeout;
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!(
            "fulfill: error: the run took longer than {} (--timeout plus [mailbox] run_timeout) and was stopped; \
             its state is kept and the next run goes on",
            humantime::format_duration(limit)
        );
        std::process::exit(Exit::Failure as i32);
    });

    let portal = connect_portal(settings)?;
    let orders = if args.all_pending {
        let account = portal.account_id().context("finding the portal account")?;
        portal
            .ssl_orders(account)
            .context("listing the SSL orders")?
            .into_iter()
            // A canceled order will never be fulfilled (softlayer-api.md §1.5).
            .filter(|o| {
                !o.status
                    .as_ref()
                    .and_then(|s| s.name.as_deref())
                    .is_some_and(|n| n.eq_ignore_ascii_case("Canceled"))
            })
            .collect()
    } else {
        args.order
            .iter()
            .map(|id| {
                portal
                    .ssl_order(*id)
                    .with_context(|| format!("reading order {id} from the portal"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };

    let local_keys = load_known_keys(settings, &[])?;
    // The orders' CSRs first, so that an import is recorded for its order.
    let mut keys: Vec<_> = orders
        .iter()
        .flat_map(|o| order_csr_keys(o, &local_keys))
        .collect();
    keys.extend(local_keys);
    let checks = import_checks(settings, None, keys)?;
    let mut store = open_store(settings, args.dry_run)?;
    let config = &mailbox.session;
    let mut session = Session::connect(config)
        .with_context(|| format!("connecting to the mailbox {}:{}", config.host, config.port))?;
    let deploy_hook = match args
        .deploy_hook
        .clone()
        .or_else(|| settings.file.deploy_hook.clone())
    {
        Some(command) => Some(DeployHook {
            command,
            timeout: settings.deploy_hook_timeout()?,
        }),
        None => None,
    };
    let results = Loop {
        portal: &portal,
        session: &mut session,
        mailbox: &mailbox,
        account: format!("{}@{}:{}", config.username, config.host, config.port),
        checks,
        store: store.as_mut(),
        options: LoopOptions {
            resend: !args.no_resend,
            timeout: args.timeout,
            cooldown: settings.resend_cooldown()?,
            dry_run: args.dry_run,
            deploy_hook,
        },
    }
    .run(&orders, now)?;
    session.logout();

    let exit = results
        .iter()
        .fold(Exit::Done, |exit, r| exit.worst(r.outcome.exit()));
    if json {
        print_json(&results)?;
    } else {
        report(&results, quiet)?;
    }
    Ok(exit)
}

/// One line per order; nothing with -q when there was nothing to do. Failures also go to
/// stderr with what to do next.
fn report(results: &[OrderResult], quiet: bool) -> io::Result<()> {
    if quiet
        && results
            .iter()
            .all(|r| r.outcome == OrderOutcome::AlreadyImported)
    {
        return Ok(());
    }
    let mut out = io::stdout().lock();
    if results.is_empty() {
        writeln!(out, "No pending SSL orders.")?;
    }
    for r in results {
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
        if let Some(reason) = &r.reason {
            line.push_str(&format!(": {reason}"));
        }
        writeln!(out, "{line}")?;
        if r.outcome == OrderOutcome::Failed {
            eprintln!(
                "fulfill: order {}: {}",
                r.order_id,
                r.reason.as_deref().unwrap_or("failed")
            );
        }
    }
    Ok(())
}
