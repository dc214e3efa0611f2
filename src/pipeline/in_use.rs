//! Where certificates are in use, for `orders` and `show`: the load balancer listeners the
//! portal says use a certificate now (docs/softlayer-api.md §7.1, §7.2), joined with what
//! fulfill recorded of its own moves (`replacements`, pipeline/replace.rs).
//!
//! Reading costs one `getLbaasListeners` call per certificate asked about, and the
//! account's load balancers (`getAllObjects`, the only way from a listener to its load
//! balancer, §7.2) at most once per run, only when some certificate has listeners.

use serde::Serialize;

use crate::portal::lbaas::{Listener, LoadBalancer};
use crate::portal::{Portal, PortalError};
use crate::store::{ReplaceState, ReplacementRow, Store};

/// Reads from the portal which listeners use a certificate, and their load balancers.
pub struct ListenerLookup<'a> {
    portal: &'a Portal,
    balancers: Option<Vec<LoadBalancer>>,
    /// Why the portal could not say, once it could not: it is not asked again this run.
    failed: Option<String>,
}

impl<'a> ListenerLookup<'a> {
    pub fn new(portal: &'a Portal) -> ListenerLookup<'a> {
        ListenerLookup {
            portal,
            balancers: None,
            failed: None,
        }
    }

    /// The listeners that use a certificate of the portal's store, each with the uuid of
    /// its load balancer (`None`: on no load balancer of the account).
    pub fn listeners(
        &mut self,
        portal_id: i64,
    ) -> Result<Vec<(Listener, Option<String>)>, PortalError> {
        let listeners = self.portal.lbaas_listeners(portal_id)?;
        if listeners.is_empty() {
            return Ok(Vec::new());
        }
        let balancers = match self.balancers.take() {
            Some(balancers) => balancers,
            None => self.portal.load_balancers()?,
        };
        let found = (listeners.into_iter())
            .map(|listener| {
                let balancer = balancers
                    .iter()
                    .find(|b| b.listener(&listener.uuid).is_some());
                let uuid = balancer.map(|b| b.uuid.clone());
                (listener, uuid)
            })
            .collect();
        self.balancers = Some(balancers);
        Ok(found)
    }
}

/// One listener that uses a certificate.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerInUse {
    pub listener_uuid: String,
    pub load_balancer_uuid: Option<String>,
    /// The listener's frontend protocol and port (unknown when only recorded).
    pub protocol: Option<String>,
    pub port: Option<i64>,
    /// The portal says so now; `false`: only fulfill's record of a move names it.
    pub live: bool,
    /// fulfill's move of this listener to or from the certificate, if it made one.
    #[serde(rename = "move")]
    pub recorded_move: Option<RecordedMove>,
}

/// A move fulfill recorded (`replacements`).
#[derive(Debug, Clone, Serialize)]
pub struct RecordedMove {
    pub old_portal_id: i64,
    pub new_portal_id: i64,
    pub state: ReplaceState,
    /// "moved", "pending", "failed" or "skipped".
    pub progress: &'static str,
    pub last_error: Option<String>,
}

impl RecordedMove {
    fn of(row: &ReplacementRow) -> RecordedMove {
        RecordedMove {
            old_portal_id: row.old_portal_id,
            new_portal_id: row.new_portal_id,
            state: row.state,
            progress: row.progress(),
            last_error: row.last_error.clone(),
        }
    }
}

/// Whether the portal was asked where a certificate is in use, and what came of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveView {
    /// The listeners marked `live` are what the portal says now.
    Portal,
    /// Not asked: no portal is configured, or the certificate is not in its store.
    NotAsked,
    /// The portal could not say; only fulfill's record is shown.
    Unavailable,
}

/// Where one certificate is in use, and how that is known.
#[derive(Debug, Clone, Serialize)]
pub struct InUse {
    pub live_view: LiveView,
    /// Why the portal was not asked, or could not say.
    pub why: Option<String>,
    pub listeners: Vec<ListenerInUse>,
}

impl InUse {
    /// How many listeners the portal says use it, when it was asked.
    pub fn live_count(&self) -> Option<usize> {
        (self.live_view == LiveView::Portal)
            .then(|| self.listeners.iter().filter(|l| l.live).count())
    }
}

/// How the portal can be asked.
pub enum Asking<'l, 'p> {
    Portal(&'l mut ListenerLookup<'p>),
    NotConfigured,
    /// No client could be made (its credentials command failed...): why.
    Unreachable(String),
}

/// Where a certificate is in use: recorded (`certificate_id`), in the portal's store
/// (`portal_id`), or both. The portal is asked only for a certificate with a portal id,
/// and not again once it failed this run (one warning says so).
pub fn where_in_use(
    portal: Asking<'_, '_>,
    store: Option<&Store>,
    certificate_id: Option<i64>,
    portal_id: Option<i64>,
) -> InUse {
    // A database written by an older fulfill, read without migrating it, has no
    // replacements table: nothing was moved then.
    let recorded = (store.map(|s| s.replacements_involving(certificate_id, portal_id)))
        .and_then(Result::ok)
        .unwrap_or_default();
    let not_asked = |why: &str| (LiveView::NotAsked, Some(why.to_string()), None);
    let (live_view, why, live) = match (portal, portal_id) {
        (_, None) => not_asked("not in the portal's store"),
        (Asking::NotConfigured, _) => not_asked("no portal configured"),
        (Asking::Unreachable(why), _) => unavailable(why),
        (Asking::Portal(lookup), Some(portal_id)) => ask(lookup, portal_id),
    };
    InUse {
        live_view,
        why,
        listeners: join(live, &recorded),
    }
}

type Asked = (
    LiveView,
    Option<String>,
    Option<Vec<(Listener, Option<String>)>>,
);

fn ask(lookup: &mut ListenerLookup<'_>, portal_id: i64) -> Asked {
    if let Some(why) = &lookup.failed {
        return (LiveView::Unavailable, Some(why.clone()), None);
    }
    match lookup.listeners(portal_id) {
        Ok(live) => (LiveView::Portal, None, Some(live)),
        Err(e) => {
            let asked = unavailable(e.to_string());
            lookup.failed = asked.1.clone();
            asked
        }
    }
}

fn unavailable(error: String) -> Asked {
    let why = format!("the portal cannot say where certificates are in use now: {error}");
    log::warn!("{why}; showing what the database recorded");
    (LiveView::Unavailable, Some(why), None)
}

/// The live listeners, each with the last move recorded for it, then the moves recorded
/// for listeners the portal does not name (all of them when it was not asked).
fn join(
    live: Option<Vec<(Listener, Option<String>)>>,
    recorded: &[ReplacementRow],
) -> Vec<ListenerInUse> {
    let last_move = |uuid: &str| recorded.iter().rev().find(|r| r.listener_uuid == uuid);
    let live = live.unwrap_or_default();
    let mut listeners: Vec<ListenerInUse> = (live.iter())
        .map(|(listener, balancer)| ListenerInUse {
            listener_uuid: listener.uuid.clone(),
            load_balancer_uuid: balancer.clone(),
            protocol: listener.protocol.clone(),
            port: listener.protocol_port,
            live: true,
            recorded_move: last_move(&listener.uuid).map(RecordedMove::of),
        })
        .collect();
    for row in recorded {
        let shown = listeners
            .iter()
            .any(|l| l.listener_uuid == row.listener_uuid);
        if !shown {
            let row = last_move(&row.listener_uuid).unwrap_or(row);
            listeners.push(ListenerInUse {
                listener_uuid: row.listener_uuid.clone(),
                load_balancer_uuid: Some(row.load_balancer_uuid.clone()),
                protocol: None,
                port: None,
                live: false,
                recorded_move: Some(RecordedMove::of(row)),
            });
        }
    }
    listeners
}
