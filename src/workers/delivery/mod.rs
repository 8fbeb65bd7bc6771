//! The delivery worker: claims due deliveries (leased, per-webhook capacity), signs and sends
//! them, records every attempt, schedules retries and pauses failing webhooks.
//!
//! Isolation: each webhook gets at most `max_in_flight` attempts at once (ordered webhooks one),
//! and claims are made per webhook, so a dead endpoint only ever occupies its own slots.
//!
//! Claim ahead: the `spawn` loop keeps up to `PREFETCH_FACTOR × max_in_flight` already-leased
//! deliveries per concurrent webhook in a local queue, and a finishing attempt hands its slot
//! straight to the next queued one. Without it every slot would idle for a whole claim round
//! (webhook list, writer round-trip) between two requests. Ordered webhooks never prefetch.
mod attempt;

use crate::domain::signature::secret_bytes;
use crate::domain::time::now_millis;
use crate::service::Services;
use crate::store::{ClaimSlot, Claimed, StoreResult, WebhookRow};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest idle sleep between claim rounds (retries due later are found by then).
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How long the cached active-webhook list is trusted. Safe to be stale: the claim itself only
/// leases deliveries of webhooks that are active in the store at that moment.
const HOOKS_TTL: Duration = Duration::from_millis(250);
/// Prefetched deliveries per concurrent webhook, as a multiple of its `max_in_flight`.
const PREFETCH_FACTOR: u32 = 4;
/// A prefetched delivery is only started while its lease still covers a whole attempt plus
/// this margin (for recording); otherwise it is given back unattempted and claimed again.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// A webhook as the worker needs it: row plus opened key.
struct Target {
    row: WebhookRow,
    key: Vec<u8>,
}

/// A claimed delivery waiting for a free slot of its webhook.
struct Queued {
    claimed: Claimed,
    /// Past this instant the lease may lapse mid-attempt, so the delivery is not started.
    start_before: Instant,
}

/// The worker's view of one webhook.
#[derive(Default)]
struct Hook {
    /// `None` once the webhook left the active set (its queue is then empty).
    target: Option<Arc<Target>>,
    limit: u32,
    /// How many claimed deliveries may wait beyond the in-flight ones.
    prefetch: u32,
    in_flight: u32,
    queue: VecDeque<Queued>,
}

/// Claims to give back unattempted: `(delivery id, lease token)`.
type GiveBack = Vec<(String, i64)>;

impl Hook {
    /// The next queued delivery whose lease still covers an attempt; the ones that waited too
    /// long go to `back`.
    fn pop_fresh(&mut self, now: Instant, back: &mut GiveBack) -> Option<Claimed> {
        while let Some(q) = self.queue.pop_front() {
            if now < q.start_before {
                return Some(q.claimed);
            }
            tracing::debug!(delivery_id = %q.claimed.id, "prefetched delivery waited too long; giving it back");
            back.push((q.claimed.id, q.claimed.lease_token));
        }
        None
    }

    /// Empties the queue into `back`.
    fn drop_queue(&mut self, back: &mut GiveBack) {
        back.extend(
            self.queue
                .drain(..)
                .map(|q| (q.claimed.id, q.claimed.lease_token)),
        );
    }
}

#[derive(Default)]
struct State {
    hooks: HashMap<String, Hook>,
    /// When the active webhook list was last read (`None`: never).
    refreshed: Option<Instant>,
    /// [`Services::webhook_epoch`] as it was before that read.
    epoch: u64,
}

/// One in-flight slot of a webhook; handed on or released once, at the latest when dropped.
struct Slot {
    worker: DeliveryWorker,
    webhook_id: String,
    held: bool,
}

impl Slot {
    /// Hands the slot to the webhook's next prefetched delivery, or frees it.
    fn finish(&mut self) {
        if !std::mem::replace(&mut self.held, false) {
            return;
        }
        if let Some((t, c)) = self.worker.next_or_free(&self.webhook_id) {
            self.worker.start(t, c);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Only reached without `finish` when the task was aborted: free the slot, no hand-off.
        if std::mem::replace(&mut self.held, false) {
            self.worker.free(&self.webhook_id);
        }
    }
}

/// The delivery worker.
#[derive(Clone)]
pub struct DeliveryWorker {
    services: Arc<Services>,
    id: String,
    state: Arc<Mutex<State>>,
    /// Wakes the claim loop: a slot was freed or a queue ran low.
    freed: Arc<Notify>,
    tasks: TaskTracker,
    /// Set at shutdown: running attempts finish, queued ones are not started.
    stopping: Arc<AtomicBool>,
}

impl DeliveryWorker {
    /// A worker leasing deliveries under `node` (this process's node id, [`crate::node`]).
    pub fn new(services: Arc<Services>, node: &str) -> Self {
        Self {
            services,
            id: node.to_string(),
            state: Arc::new(Mutex::new(State::default())),
            freed: Arc::new(Notify::new()),
            tasks: TaskTracker::new(),
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The state lock. A panic while holding it cannot leave the counters half-updated (every
    /// critical section is plain bookkeeping), so a poisoned lock is simply taken over.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(self.services.webhooks.config.attempt_timeout_secs)
    }

    /// A lease must outlast the wait in the local queue (at most `PREFETCH_FACTOR` attempts of
    /// the slots ahead, each bounded by the attempt timeout) plus the delivery's own attempt.
    fn lease(&self) -> Duration {
        self.attempt_timeout() * (PREFETCH_FACTOR + 1) + Duration::from_secs(30)
    }

    /// Re-reads the active webhooks: opens keys only for new or changed secrets, drops the
    /// queues of webhooks that are no longer active (paused, revoked, deleted).
    async fn refresh(&self) -> StoreResult<()> {
        // Read before the list: a change committed after this shows as a newer epoch.
        let epoch = self.epoch();
        let rows = self.services.store.active_webhooks().await?;
        let known: HashMap<String, Arc<Target>> = self
            .state()
            .hooks
            .iter()
            .filter_map(|(id, h)| h.target.clone().map(|t| (id.clone(), t)))
            .collect();
        let mut fresh = HashMap::with_capacity(rows.len());
        for w in rows {
            let key = match known.get(&w.id) {
                Some(t) if t.row.secret_sealed == w.secret_sealed => Some(t.key.clone()),
                _ => self
                    .services
                    .webhooks
                    .sealer
                    .open(&w.secret_sealed, &w.id)
                    .ok()
                    .and_then(|s| secret_bytes(s.expose()).ok()),
            };
            match key {
                Some(key) => {
                    fresh.insert(w.id.clone(), Arc::new(Target { row: w, key }));
                }
                None => {
                    tracing::error!(webhook_id = %w.id, "cannot open the signing secret (wrong webhooks.encryption_key?)")
                }
            }
        }
        let mut back = GiveBack::new();
        let mut st = self.state();
        st.hooks.retain(|id, h| {
            if !fresh.contains_key(id) {
                h.target = None;
                h.drop_queue(&mut back);
            }
            h.target.is_some() || h.in_flight > 0
        });
        for (id, t) in fresh {
            let ordered = t.row.mode == "ordered";
            let h = st.hooks.entry(id).or_default();
            h.limit = if ordered {
                1
            } else {
                t.row.max_in_flight.max(1)
            };
            h.prefetch = if ordered {
                0
            } else {
                h.limit * PREFETCH_FACTOR
            };
            if ordered {
                // Switched to ordered mode: deliveries claimed ahead (out of sequence) must not
                // be sent; they are given back and the head is claimed alone.
                h.drop_queue(&mut back);
            }
            h.target = Some(t);
        }
        st.refreshed = Some(Instant::now());
        st.epoch = epoch;
        drop(st);
        self.give_back(back);
        Ok(())
    }

    fn epoch(&self) -> u64 {
        self.services.webhook_epoch.load(Ordering::SeqCst)
    }

    /// Whether the webhook list predates a change made through this process: then no attempt
    /// starts from it (a revoke or pause answered here must stop this node's sends at once).
    fn outdated(&self, st: &State) -> bool {
        st.epoch != self.epoch()
    }

    /// Ends the leases of claims dropped unattempted (fenced by their tokens), so they can be
    /// claimed again at once, here or on another node. If that fails they simply lapse.
    fn give_back(&self, back: GiveBack) {
        if back.is_empty() {
            return;
        }
        let store = self.services.store.clone();
        self.tasks.spawn(async move {
            if let Err(e) = store.unlease(back).await {
                tracing::warn!(error = %e, "giving back unattempted deliveries failed; their leases will lapse");
            }
        });
    }

    /// One claim round: claims what is due within each webhook's free capacity (plus its
    /// prefetch allowance when `prefetch`), then starts as many as slots allow. Returns how many
    /// were claimed.
    async fn claim_round(&self, prefetch: bool, refresh: bool) -> StoreResult<usize> {
        let stale = {
            let st = self.state();
            st.refreshed.is_none_or(|at| at.elapsed() >= HOOKS_TTL) || self.outdated(&st)
        };
        if refresh || stale {
            self.refresh().await?;
        }
        let slots: Vec<ClaimSlot> = self
            .state()
            .hooks
            .iter()
            .filter_map(|(id, h)| {
                let t = h.target.as_ref()?;
                let extra = if prefetch { h.prefetch } else { 0 };
                let have = h.in_flight + h.queue.len() as u32;
                let want = (h.limit + extra).saturating_sub(have);
                // While prefetching, top a webhook up only once it is half empty: claims then
                // come in batches instead of one writer round-trip per finished attempt.
                let floor = if extra > 0 { (h.limit + extra) / 2 } else { 1 };
                (want >= floor.max(1)).then(|| ClaimSlot {
                    webhook_id: id.clone(),
                    ordered: t.row.mode == "ordered",
                    free: want,
                })
            })
            .collect();
        if slots.is_empty() {
            // Full queues may still hold deliveries that no slot has taken yet.
            self.start_ready();
            return Ok(0);
        }
        let lease = self.lease();
        let start_before =
            Instant::now() + lease.saturating_sub(self.attempt_timeout() + LEASE_MARGIN);
        let claimed = self
            .services
            .store
            .claim(now_millis(), lease.as_millis() as i64, &self.id, slots)
            .await?;
        let n = claimed.len();
        let mut back = GiveBack::new();
        {
            let mut st = self.state();
            for c in claimed {
                // A webhook that left the active set meanwhile: given back (or the pause
                // already turned the delivery `held`).
                match st.hooks.get_mut(&c.webhook_id) {
                    Some(h) if h.target.is_some() => h.queue.push_back(Queued {
                        claimed: c,
                        start_before,
                    }),
                    _ => back.push((c.id, c.lease_token)),
                }
            }
        }
        self.give_back(back);
        self.start_ready();
        Ok(n)
    }

    /// Starts queued deliveries in every free slot. Not from a webhook list that predates a
    /// change made through this process: then the claim loop is woken to re-read it first (the
    /// queues keep their deliveries meanwhile).
    fn start_ready(&self) {
        let mut starts = Vec::new();
        let mut back = GiveBack::new();
        {
            let mut st = self.state();
            if self.outdated(&st) {
                drop(st);
                self.freed.notify_one();
                return;
            }
            let now = Instant::now();
            for h in st.hooks.values_mut() {
                let Some(t) = h.target.clone() else { continue };
                while h.in_flight < h.limit {
                    let Some(c) = h.pop_fresh(now, &mut back) else {
                        break;
                    };
                    h.in_flight += 1;
                    starts.push((t.clone(), c));
                }
            }
        }
        self.give_back(back);
        for (t, c) in starts {
            self.start(t, c);
        }
    }

    /// Starts an attempt in a slot already counted in `in_flight`.
    fn start(&self, t: Arc<Target>, c: Claimed) {
        let this = self.clone();
        self.tasks.spawn(async move {
            let mut slot = Slot {
                worker: this.clone(),
                webhook_id: c.webhook_id.clone(),
                held: true,
            };
            if let Err(e) = this.attempt(&t, c, &mut slot).await {
                tracing::warn!(error = %e, "recording a delivery attempt failed; the lease will expire and it is retried");
            }
            slot.finish();
        });
    }

    /// A slot of `webhook_id` is done: returns the next prefetched delivery to run in it, or frees
    /// it. Wakes the claim loop when the slot is freed or the queue runs low.
    fn next_or_free(&self, webhook_id: &str) -> Option<(Arc<Target>, Claimed)> {
        let mut back = GiveBack::new();
        let mut st = self.state();
        let outdated = self.outdated(&st);
        let h = st.hooks.get_mut(webhook_id)?;
        // A lowered limit (patch) is honoured by not handing slots on above it; after a change
        // through this process, the claim loop re-reads the list before anything starts.
        if !self.stopping.load(Ordering::Relaxed)
            && !outdated
            && h.in_flight <= h.limit
            && let Some(t) = h.target.clone()
            && let Some(c) = h.pop_fresh(Instant::now(), &mut back)
        {
            if h.queue.len() as u32 <= h.prefetch / 2 {
                self.freed.notify_one();
            }
            drop(st);
            self.give_back(back);
            return Some((t, c));
        }
        h.in_flight = h.in_flight.saturating_sub(1);
        if h.target.is_none() && h.in_flight == 0 {
            st.hooks.remove(webhook_id);
        }
        drop(st);
        self.give_back(back);
        self.freed.notify_one();
        None
    }

    /// Frees a slot without handing it on.
    fn free(&self, webhook_id: &str) {
        if let Some(h) = self.state().hooks.get_mut(webhook_id) {
            h.in_flight = h.in_flight.saturating_sub(1);
        }
        self.freed.notify_one();
    }

    /// Waits until every started attempt (and any hand-off it made) has finished.
    async fn wait_attempts(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    /// One step: claims due deliveries (no prefetch), attempts them and waits for the results.
    /// Returns how many were attempted (0 = nothing due).
    pub async fn run_once(&self) -> StoreResult<usize> {
        let n = self.claim_round(false, true).await?;
        self.wait_attempts().await;
        Ok(n)
    }

    /// Runs steps until nothing is due now (retries scheduled later are not waited for).
    pub async fn run_until_idle(&self) -> StoreResult<usize> {
        let mut total = 0;
        loop {
            let n = self.run_once().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Runs until cancelled: claims whenever capacity frees up or a queue runs low, events
    /// commit, or retries fall due.
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            // Leases carry the node id (`claimed_by`), so a stuck lease can be traced to its node.
            tracing::info!(node_id = %self.id, "delivery worker started");
            match self.services.store.release_leases(&self.id).await {
                Ok(n) if n > 0 => {
                    tracing::info!(
                        released = n,
                        "released the delivery leases of this node's previous run"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "releasing old leases failed"),
            }
            let mut commits = self.services.store.commits();
            let mut last_gauge = Instant::now() - Duration::from_secs(10);
            // After a round that found nothing, re-read the webhook list at once: a webhook
            // created or enabled since then should not wait for the cache to age.
            let mut idle = true;
            loop {
                if stop.is_cancelled() {
                    break;
                }
                commits.borrow_and_update();
                let claimed = match self.claim_round(true, idle).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming deliveries failed");
                        0
                    }
                };
                idle = claimed == 0 && self.state().hooks.values().all(|h| h.in_flight == 0);
                if last_gauge.elapsed() >= Duration::from_secs(1) {
                    last_gauge = Instant::now();
                    if let Ok(d) = self.services.store.queue_depth().await {
                        metrics::gauge!("ipm_webhook_queue_depth").set(d as f64);
                    }
                }
                if claimed > 0 {
                    continue;
                }
                let sleep = match self.services.store.next_due_ms().await {
                    Ok(Some(due)) => Duration::from_millis(
                        (due - now_millis()).clamp(5, IDLE_POLL.as_millis() as i64) as u64,
                    ),
                    _ => IDLE_POLL,
                };
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = commits.changed() => {}
                    _ = self.freed.notified() => {}
                    _ = tokio::time::sleep(sleep) => {}
                }
            }
            // Let in-flight attempts finish (bounded by the attempt timeout) so their results
            // are recorded before the store closes; prefetched ones are given back, so other
            // nodes need not wait for their leases.
            self.stopping.store(true, Ordering::Relaxed);
            let mut back = GiveBack::new();
            for h in self.state().hooks.values_mut() {
                h.drop_queue(&mut back);
            }
            self.give_back(back);
            let grace = self.attempt_timeout() + Duration::from_secs(1);
            self.tasks.close();
            let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
        })
    }
}
