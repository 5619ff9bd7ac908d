//! The leases this process holds on deliveries, kept short and renewed.
//!
//! A claim leases a delivery for [`LEASE`]; while this process holds it (the attempt waits for a
//! slot or runs), [`run_renewals`] moves the lease's end forward every [`RENEW_EVERY`], so a
//! delivery of a process that died (`kill -9`, a lost host) is claimed again by another process
//! within [`LEASE`], however long attempts or rate-limit waits take. Each renewal, and the
//! release on shutdown, changes a lease only while it is still the one this process took (same
//! end), so it never extends or frees a lease another process took after this one's ran out.
//! On shutdown the deliveries claimed and not sent are released at once, for another process to
//! send them now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::shared::Shared;
use crate::core::time::Timestamp;
use crate::transport::sleep_or_cancel;

/// How long a claim holds a delivery without being renewed.
pub(super) const LEASE: Duration = Duration::from_secs(15);
/// How often held leases are renewed: a renewal may fail twice before the lease runs out.
pub(super) const RENEW_EVERY: Duration = Duration::from_secs(5);

/// The held leases: delivery id → the lease's present end.
#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<u64, Timestamp>>,
}

impl Leases {
    /// A lease taken by a claim.
    pub(super) fn hold(&self, id: u64, until: Timestamp) {
        self.held.lock().expect("leases lock").insert(id, until);
    }

    /// The delivery's attempt is over (recorded, or given up to run out): no more renewals.
    pub(super) fn forget(&self, id: u64) {
        self.held.lock().expect("leases lock").remove(&id);
    }

    fn snapshot(&self) -> Vec<(u64, Timestamp)> {
        let held = self.held.lock().expect("leases lock");
        held.iter().map(|(id, until)| (*id, *until)).collect()
    }

    /// After a renewal to `until`: the renewed leases end then; the others are lost (another
    /// process took the delivery, or it was recorded meanwhile) and are no longer renewed.
    fn renewed(&self, asked: &[(u64, Timestamp)], renewed: &[u64], until: Timestamp) {
        let renewed: std::collections::HashSet<u64> = renewed.iter().copied().collect();
        let mut held = self.held.lock().expect("leases lock");
        for (id, old) in asked {
            // Forgotten meanwhile, or taken anew by a claim: leave it.
            if held.get(id) != Some(old) {
                continue;
            }
            if renewed.contains(id) {
                held.insert(*id, until);
            } else {
                held.remove(id);
            }
        }
    }

    /// Takes every lease still held (the deliveries claimed and never sent, at shutdown).
    fn take_all(&self) -> Vec<(u64, Timestamp)> {
        self.held.lock().expect("leases lock").drain().collect()
    }
}

/// The end of a lease taken or renewed `now`.
pub(super) fn lease_end(now: Timestamp) -> Timestamp {
    now.plus_micros(LEASE.as_micros() as i64)
}

/// Renews the held leases every [`RENEW_EVERY`] until `stop`.
pub(super) async fn run_renewals(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        if sleep_or_cancel(&stop, RENEW_EVERY).await {
            return;
        }
        let held = shared.leases.snapshot();
        if held.is_empty() {
            continue;
        }
        let until = lease_end(Timestamp::now());
        match shared.store.renew_leases(&held, until).await {
            Ok(renewed) => {
                if renewed.len() < held.len() {
                    tracing::debug!(
                        lost = held.len() - renewed.len(),
                        "webhook leases ended before their renewal"
                    );
                }
                shared.leases.renewed(&held, &renewed, until);
            }
            // Retried at the next round; a lease that runs out meanwhile is claimed again
            // elsewhere and the attempt here may send it too (the same `webhook-id`).
            Err(e) => tracing::warn!(error = %e, "cannot renew webhook leases"),
        }
    }
}

/// Releases every lease still held: the deliveries claimed and not sent before shutdown.
pub(super) async fn release_all(shared: &Shared) {
    let held = shared.leases.take_all();
    if held.is_empty() {
        return;
    }
    match shared
        .store
        .renew_leases(&held, Timestamp::from_micros(0))
        .await
    {
        Ok(released) => {
            tracing::info!(
                released = released.len(),
                "released the webhook deliveries claimed and not sent"
            )
        }
        Err(e) => tracing::warn!(
            error = %e,
            "cannot release webhook leases; they run out within {} s",
            LEASE.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_moves_the_renewed_and_drops_the_lost() {
        let leases = Leases::default();
        let t = Timestamp::from_micros;
        leases.hold(1, t(100));
        leases.hold(2, t(100));
        leases.hold(3, t(100));
        let asked = leases.snapshot();
        // 3 was recorded while the renewal ran, and claimed anew (another lease) right after.
        leases.forget(3);
        leases.hold(3, t(150));
        leases.renewed(&asked, &[1, 3], t(200));
        let mut held = leases.snapshot();
        held.sort();
        assert_eq!(held, vec![(1, t(200)), (3, t(150))]);
        assert_eq!(leases.take_all().len(), 2);
        assert!(leases.snapshot().is_empty());
    }
}
