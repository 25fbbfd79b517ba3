//! The organisation's outgoing webhook for new approvals (chat, paging): a JSON `POST` signed
//! with HMAC-SHA256, retried with exponential backoff, delivered off the request path so a slow
//! or failing receiver never delays the held call.
//!
//! The signature header is `Gatehouse-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">`, keyed with the webhook's secret; receivers recompute it and refuse old `t`s.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use store::OrgId;
use store::approval::Approval;

use crate::Gateway;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "gatehouse-signature";

/// `t=<unix>,v1=<hex>` for `body` sent at `unix`, keyed with `secret`.
pub fn signature(secret: &[u8], unix: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix},v1={hex}")
}

/// Announces a new approval through the organisation's webhook, if it has an enabled one, in the
/// background.
pub(crate) fn announce(gw: &Gateway, org: OrgId, approval: &Approval) {
    let gw = gw.clone();
    let approval = approval.clone();
    tokio::spawn(async move {
        if let Err(e) = deliver(&gw, org, &approval).await {
            tracing::warn!(approval = %approval.approval_id, error = %e, "approval webhook not delivered");
        }
    });
}

async fn deliver(gw: &Gateway, org: OrgId, approval: &Approval) -> anyhow::Result<()> {
    let target = {
        let mut tx = gw.inner.store.begin(org).await?;
        let target = store::approval::approval_webhook(&mut tx).await?;
        tx.rollback().await?;
        target
    };
    let Some(target) = target.filter(|t| t.webhook.enabled) else {
        return Ok(());
    };
    let settings = &gw.inner.settings;
    let body = serde_json::to_vec(&json!({
        "type": "approval.created",
        "organisation_id": org,
        "approval": approval,
    }))?;
    let mut backoff = settings.webhook_backoff;
    let mut last = String::new();
    for attempt in 1..=settings.webhook_attempts.max(1) {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let sent = gw
            .inner
            .http
            .post(&target.webhook.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                signature(target.secret.expose(), unix, &body),
            )
            .timeout(
                settings
                    .response_timeout
                    .min(std::time::Duration::from_secs(10)),
            )
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(approval = %approval.approval_id, attempt, "approval webhook delivered");
                return Ok(());
            }
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        if attempt < settings.webhook_attempts {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }
    anyhow::bail!(
        "gave up after {} attempts: {last}",
        settings.webhook_attempts
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // RFC 4231 test case 2 as a check of the primitive: key "Jefe".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let s = signature(b"Jefe", 12, b"what do ya want for nothing?");
        assert!(s.starts_with("t=12,v1="));
        assert_ne!(s, format!("t=12,v1={hex}"), "the time is signed too");
    }
}
