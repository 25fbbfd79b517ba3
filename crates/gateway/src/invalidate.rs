//! Configuration invalidation, two ways:
//! - over Redis pub/sub: commands that change what a gateway caches (policy publish, grant revoke
//!   or rotate, server changes) publish one message; every replica subscribed empties its cache
//!   at once, and again on every reconnect (it may have missed messages meanwhile);
//! - from the store: every such change also moves the configuration epoch
//!   ([`store::Store::config_epoch`]) in its own transaction, and every replica reads it every
//!   [`EPOCH_EVERY`], emptying its cache when it moved. This is what makes "within a second" hold
//!   when an announcement is lost (the publisher died after its commit, Redis was down, a
//!   subscription broke without the connection noticing) and without Redis at all.

use std::time::Duration;

use futures_util::StreamExt as _;

/// Announces a configuration change on `channel`. `what` is informational (`policy:<id>`,
/// `grant:<id>`): replicas drop everything they cached either way. Returns how many replicas
/// (subscribers) received it.
pub async fn publish(client: &redis::Client, channel: &str, what: &str) -> redis::RedisResult<u64> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(what)
        .query_async(&mut conn)
        .await
}

/// Subscribes to `channel` and calls `on_change` for each message, forever, reconnecting after
/// a second when Redis goes away.
pub(crate) async fn listen(client: redis::Client, channel: String, on_change: impl Fn()) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    // Whatever changed while we were not subscribed is unknown: start afresh.
                    on_change();
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        on_change();
                    }
                    tracing::warn!(
                        channel,
                        "configuration invalidation stream ended; reconnecting"
                    );
                }
                Err(e) => {
                    tracing::warn!(channel, error = %e, "cannot subscribe to configuration invalidations")
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect to Redis for configuration invalidations");
            }
        }
        on_change();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How often a replica reads the store's configuration epoch: a change is seen at most this long
/// after it committed (plus one read), well inside the second DESIGN.md §11 allows.
pub(crate) const EPOCH_EVERY: Duration = Duration::from_millis(400);

/// Reads the store's configuration epoch every `every`, for as long as the gateway lives, and
/// empties its cache whenever the epoch moved since the last read. While the store is
/// unreachable nothing is emptied (a cached view still serves until its TTL); the first read
/// after it answers again compares with the last epoch seen before. The first read only sets the
/// mark: a new replica's cache starts empty.
pub(crate) async fn watch_epoch(gateway: std::sync::Weak<crate::Inner>, every: Duration) {
    let mut seen: Option<i64> = None;
    let mut failing = false;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = gateway.upgrade() else {
            return;
        };
        let read = tokio::time::timeout(Duration::from_secs(1), inner.store.config_epoch()).await;
        let failure = match read {
            Ok(Ok(epoch)) => {
                if seen.is_some_and(|s| s != epoch) {
                    (crate::Gateway { inner }).invalidate_all();
                }
                seen = Some(epoch);
                failing = false;
                continue;
            }
            Ok(Err(e)) => format!("{e}"),
            Err(_) => "no answer within 1 s".to_owned(),
        };
        if !failing {
            tracing::warn!(
                error = failure,
                "cannot read the configuration epoch; retrying"
            );
        }
        failing = true;
    }
}
