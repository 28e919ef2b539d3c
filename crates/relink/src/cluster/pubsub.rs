//! Pub/Sub on a cluster: subscriber connections per node, following the
//! slot map.
//!
//! Every name (channel, pattern, shard channel) is assigned to the master
//! that serves its hash slot ([`relink_core::cluster::key_slot`],
//! [`relink_core::cluster::master_of`]). For shard channels that is where
//! Redis delivers them (`SPUBLISH` reaches the subscribers of the slot's
//! shard only); classic channels and patterns are delivered by every node
//! (the cluster bus broadcasts `PUBLISH`), so hashing them spreads the
//! subscriber connections over the masters instead of piling them on one.
//! Each node with assigned names gets one subscriber connection, the same
//! connection shape as a [`Client`](crate::Client)'s (`pubsub/link.rs`,
//! driven by its own core supervisor with the cluster's settings).
//!
//! When the cluster driver reads a changed slot map (a failover, a reshard,
//! a node that left), every shard channel whose master changed moves, and
//! every channel or pattern whose node is no longer a master (a classic
//! channel is heard on every node, and moving it between two live nodes
//! risks hearing a message twice: nodes relay `PUBLISH` to each other with
//! delays of their own, seen here as messages repeated after a reshard). A
//! name that moves is
//! unsubscribed at the old node (a no-op if that node is gone), the handles
//! on it are marked displaced since the old connection was lost (or now),
//! and it is subscribed at the new master, where its confirmation gives each
//! of those handles one [`Restored`](crate::PubSubItem::Restored) marker.
//! (Right after such a marker, a classic channel may repeat a message the
//! lost node had delivered, for the same reason; a shard channel cannot:
//! `SPUBLISH` stays within its shard.) A shard subscription the server ends by itself (`sunsubscribe`: its slot
//! was migrated away) pokes the driver to read the slot map at once.
//! Connections left with no names are stopped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use relink_core::cluster::{key_slot, master_of, SlotRange};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::ClusterConfig;
use crate::pubsub::link::{Link, Target};
use crate::pubsub::{Hub, Kind, Links, Outcome, Request};

/// Which node each subscribed name is assigned to, shared with the
/// connections' `serves` filters.
type Assigned = Arc<Mutex<BTreeMap<(Kind, String), String>>>;

/// A move of names from a node (none: not assigned yet) to a node (none:
/// no master serves their slot now).
type Move = (Option<String>, Option<String>);

/// One node's subscriber connection.
struct NodeLink {
    link: Link,
    stop: CancellationToken,
}

/// Routes a cluster client's subscriptions to its nodes.
pub(super) struct Router {
    hub: Arc<Hub>,
    config: ClusterConfig,
    stop: CancellationToken,
    /// Wakes the cluster driver to read the slot map.
    poke: Arc<dyn Fn() + Send + Sync>,
    assigned: Assigned,
    state: Mutex<RouterState>,
}

#[derive(Default)]
struct RouterState {
    slots: Vec<SlotRange>,
    links: BTreeMap<String, NodeLink>,
}

impl Router {
    pub(super) fn new(
        hub: Arc<Hub>,
        config: ClusterConfig,
        stop: CancellationToken,
        poke: Arc<dyn Fn() + Send + Sync>,
    ) -> Router {
        Router {
            hub,
            config,
            stop,
            poke,
            assigned: Arc::default(),
            state: Mutex::default(),
        }
    }

    fn assigned(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Kind, String), String>> {
        self.assigned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Node `node`'s subscriber connection, started if it is not running.
    fn link<'a>(&self, state: &'a mut RouterState, node: &str) -> Option<&'a Link> {
        let running = state.links.get(node).is_some_and(|l| l.link.is_running());
        if !running {
            let started = self.start(node)?;
            state.links.insert(node.to_owned(), started);
        }
        state.links.get(node).map(|l| &l.link)
    }

    fn start(&self, node: &str) -> Option<NodeLink> {
        let (host, port) = super::host_port(node).ok()?;
        let config = match self.config.probe_config(&host, port) {
            Ok(config) => config,
            Err(e) => {
                tracing::warn!(%node, error = %e, "relink cluster cannot subscribe on node");
                return None;
            }
        };
        let connector: Arc<dyn crate::connector::Connector> =
            Arc::new(crate::connector::TcpConnector::new(&config).ok()?);
        let stop = self.stop.child_token();
        let owner = node.to_owned();
        let assigned = Arc::clone(&self.assigned);
        let serves: crate::pubsub::link::Serves = Arc::new(move |kind, name: &str| {
            assigned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&(kind, name.to_owned()))
                .is_some_and(|n| *n == owner)
        });
        let settings = config.supervisor_config();
        let seed = config.jitter_seed();
        let link = Link::start(
            Arc::clone(&self.hub),
            Target {
                connector,
                config: Arc::new(move || config.clone()),
                name: node.to_owned(),
                on_displaced: Some(Arc::clone(&self.poke)),
                changes: None,
            },
            serves,
            settings,
            seed,
            stop.clone(),
            false,
        );
        Some(NodeLink { link, stop })
    }

    /// The cluster driver read a slot map: moves every name whose master
    /// changed, and stops the connections left with none.
    pub(super) fn topology(&self, slots: &[SlotRange]) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.slots == slots {
            return;
        }
        state.slots = slots.to_vec();
        let now = Instant::now();
        let wanted = self.hub.wanted(&|_, _| true);
        let mut moves: BTreeMap<Move, Vec<(Kind, String)>> = BTreeMap::new();
        {
            let assigned = self.assigned();
            for (kind, names) in &wanted {
                for name in names {
                    let key = (*kind, name.clone());
                    let old = assigned.get(&key).cloned();
                    let new = match (kind, &old) {
                        // A classic channel stays where it is while that
                        // node is a master: nodes relay a PUBLISH to each
                        // other with delays of their own, so a channel moved
                        // from one to another can hear a message twice.
                        (Kind::Channel | Kind::Pattern, Some(node))
                            if slots.iter().any(|r| r.master == *node) =>
                        {
                            old.clone()
                        }
                        _ => master_of(slots, key_slot(name.as_bytes())).map(str::to_owned),
                    };
                    if old != new {
                        moves.entry((old, new)).or_default().push(key);
                    }
                }
            }
        }
        for ((old, new), names) in moves {
            let since = old
                .as_ref()
                .and_then(|node| state.links.get(node))
                .and_then(|l| l.link.lost_at())
                .unwrap_or(now);
            tracing::info!(
                from = old.as_deref().unwrap_or("-"),
                to = new.as_deref().unwrap_or("-"),
                names = names.len(),
                "relink cluster subscriptions move"
            );
            {
                let mut assigned = self.assigned();
                for key in &names {
                    match &new {
                        Some(node) => assigned.insert(key.clone(), node.clone()),
                        None => assigned.remove(key),
                    };
                }
            }
            for (kind, group) in group_by_kind(&names) {
                self.hub.displaced(kind, &group, since);
                let old_link = old
                    .as_deref()
                    .and_then(|n| state.links.get(n))
                    .map(|l| l.link.clone());
                let new_link = new
                    .as_deref()
                    .and_then(|n| self.link(&mut state, n))
                    .cloned();
                // Off the old node before on the new one: every node
                // delivers a classic PUBLISH, so subscribed at both for a
                // moment, a message would come twice. (A shard channel's
                // old node has usually dropped it already, or is gone.) The
                // window between is covered by the handles' marker.
                tokio::spawn(async move {
                    if let Some(old_link) = old_link {
                        let (done, unsubscribed) = oneshot::channel();
                        old_link.send(Request {
                            subscribe: false,
                            kind,
                            names: group.clone(),
                            done: Some(done),
                        });
                        let _ = unsubscribed.await;
                    }
                    if let Some(new_link) = new_link {
                        new_link.send(Request {
                            subscribe: true,
                            kind,
                            names: group,
                            done: None,
                        });
                    }
                });
            }
        }
        self.retire_idle(&mut state);
    }

    /// Stops the connections of nodes no name is assigned to.
    fn retire_idle(&self, state: &mut RouterState) {
        let assigned = self.assigned();
        state.links.retain(|node, link| {
            let busy = assigned.values().any(|n| n == node);
            if !busy {
                link.stop.cancel();
            }
            busy
        });
    }
}

/// `(kind, name)` pairs grouped by kind, in order.
fn group_by_kind(names: &[(Kind, String)]) -> Vec<(Kind, Vec<String>)> {
    let mut out: Vec<(Kind, Vec<String>)> = Vec::new();
    for (kind, name) in names {
        match out.iter_mut().find(|(k, _)| k == kind) {
            Some((_, group)) => group.push(name.clone()),
            None => out.push((*kind, vec![name.clone()])),
        }
    }
    out
}

impl Links for Router {
    fn send(&self, request: Request) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Which node serves each name: its slot's master for a subscribe
        // (none while the slot map is unknown: the first read assigns it),
        // where it was assigned for an unsubscribe.
        let mut by_node: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
        {
            let mut assigned = self.assigned();
            for name in &request.names {
                let key = (request.kind, name.clone());
                let node = if request.subscribe {
                    let node =
                        master_of(&state.slots, key_slot(name.as_bytes())).map(str::to_owned);
                    if let Some(node) = &node {
                        assigned.insert(key, node.clone());
                    }
                    node
                } else {
                    assigned.remove(&key)
                };
                by_node.entry(node).or_default().push(name.clone());
            }
        }
        let mut outcomes = Vec::new();
        for (node, names) in by_node {
            let (done, outcome) = oneshot::channel();
            outcomes.push(outcome);
            match node.as_deref().and_then(|n| self.link(&mut state, n)) {
                Some(link) => link.send(Request {
                    subscribe: request.subscribe,
                    kind: request.kind,
                    names,
                    done: Some(done),
                }),
                // No node for it now: it is in place once one is known.
                None => {
                    let _ = done.send(Outcome::Deferred);
                }
            }
        }
        if !request.subscribe {
            self.retire_idle(&mut state);
        }
        drop(state);
        if let Some(done) = request.done {
            tokio::spawn(async move {
                let _ = done.send(merge(outcomes).await);
            });
        }
    }
}

/// One outcome for a request split over nodes: refused if any node refused
/// it, deferred if any could not take it now, else confirmed.
async fn merge(outcomes: Vec<oneshot::Receiver<Outcome>>) -> Outcome {
    let mut merged = Outcome::Confirmed;
    for outcome in outcomes {
        match outcome.await.unwrap_or(Outcome::Deferred) {
            Outcome::Refused(e) => return Outcome::Refused(e),
            Outcome::Deferred => merged = Outcome::Deferred,
            Outcome::Confirmed => {}
        }
    }
    merged
}

/// A cluster client's Pub/Sub: the hub and the router.
pub(super) struct ClusterPubSub {
    pub(super) hub: Arc<Hub>,
    pub(super) router: Arc<Router>,
}

impl ClusterPubSub {
    pub(super) fn new(
        config: &ClusterConfig,
        stop: CancellationToken,
        poke: Weak<tokio::sync::Notify>,
    ) -> ClusterPubSub {
        let hub = Arc::new(Hub::new(config.settings().subscription_buffer()));
        let poke: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            if let Some(poke) = poke.upgrade() {
                poke.notify_one();
            }
        });
        let router = Arc::new(Router::new(Arc::clone(&hub), config.clone(), stop, poke));
        ClusterPubSub { hub, router }
    }
}
