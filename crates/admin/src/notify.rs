//! Telling the gateways that something they act on changed, after the change committed: new pins
//! on [`crate::INVALIDATION_CHANNEL`], approval decisions on [`AdminConfig::approval_channel`]
//! (and through [`AdminConfig::on_approval_decided`] in one process). Announcements only say
//! "look again": a gateway always reads what changed from the store, and one that missed a
//! message notices within its cache TTL (pins) or its next re-read of the approval (decisions).
//!
//! [`AdminConfig::approval_channel`]: crate::AdminConfig::approval_channel
//! [`AdminConfig::on_approval_decided`]: crate::AdminConfig::on_approval_decided

use store::ApprovalId;

use crate::AppState;

/// Publishes `message` on `channel` of the configured Redis; `Ok(false)` when there is none.
pub(crate) async fn publish(
    state: &AppState,
    channel: &str,
    message: &str,
) -> redis::RedisResult<bool> {
    let Some(client) = &state.config.redis else {
        return Ok(false);
    };
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query_async::<i64>(&mut conn)
        .await?;
    Ok(true)
}

/// Announces that approval `id` was decided (call it after the decision committed): its id on
/// the approval channel, and the in-process hook. A failure to publish is only logged: the
/// decision is stored, and every held call re-reads its approval about once a second.
pub(crate) async fn approval_decided(state: &AppState, id: ApprovalId) {
    if let Err(e) = publish(state, &state.config.approval_channel, &id.to_string()).await {
        tracing::warn!(approval = %id, error = %e, "could not announce the decision; held calls notice it when they next re-read the approval");
    }
    if let Some(hook) = &state.config.on_approval_decided {
        hook();
    }
}
