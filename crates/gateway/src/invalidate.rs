//! Configuration invalidation over Redis pub/sub: commands that change what a gateway caches
//! (policy publish, grant revoke or rotate, server changes) publish one message; every replica
//! subscribed empties its cache. Lost messages (a replica disconnected from Redis) are covered by
//! emptying the cache on every reconnect and by the cache's TTL.

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
