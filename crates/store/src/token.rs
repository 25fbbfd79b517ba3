//! What the two kinds of bearer credentials an outsider presents (grant tokens to the gateway,
//! API keys to the admin API) share: finding the row by the token's hash without an organisation
//! in hand, and telling whether it still works.

use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::secret::{TokenHash, TokenKind};
use crate::{Result, Store};

/// The longest bearer token looked up at all; ours are 48 characters.
const MAX_TOKEN_CHARS: usize = 100;

/// Whether `token` can be one of `kind`'s: anything else is unknown without asking the database.
pub(crate) fn may_be(kind: TokenKind, token: &str) -> bool {
    token.starts_with(kind.prefix()) && token.len() <= MAX_TOKEN_CHARS
}

/// Neither revoked nor expired at `now`.
pub(crate) fn is_live(
    revoked_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> bool {
    revoked_at.is_none() && expires_at.is_none_or(|t| t > now)
}

impl Store {
    /// Runs `lookup` (a query of one of the security-definer functions that return only the row
    /// whose token hash matches exactly) as the restricted role, outside any organisation, in a
    /// transaction of its own.
    pub(crate) async fn by_token_hash<T>(
        &self,
        hash: TokenHash,
        lookup: impl AsyncFnOnce(&mut PgConnection, TokenHash) -> sqlx::Result<Option<T>>,
    ) -> Result<Option<T>> {
        let mut tx = self.begin_unscoped().await?;
        let row = lookup(&mut tx, hash).await?;
        tx.commit().await?;
        Ok(row)
    }
}
