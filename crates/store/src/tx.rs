//! The connection pool and the organisation-scoped transaction every tenant query runs in.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::secret::Keyring;
use crate::{OrgId, Result};

/// The store: a Postgres pool plus the keyring that seals and opens secrets.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    keyring: Keyring,
}

impl Store {
    pub fn new(pool: PgPool, keyring: Keyring) -> Self {
        Self { pool, keyring }
    }

    /// Connects with a modest pool; the database URL's password is never logged by sqlx.
    pub async fn connect(database_url: &str, keyring: Keyring) -> Result<Self> {
        let options: PgConnectOptions = database_url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(Self::new(pool, keyring))
    }

    /// [`Store::connect`], with every statement of the pool's connections cancelled by Postgres
    /// after `statement_timeout` (the gateway's: a slow query gives its connection back instead of
    /// holding it while other tenants wait).
    pub async fn connect_with_statement_timeout(
        database_url: &str,
        keyring: Keyring,
        statement_timeout: std::time::Duration,
    ) -> Result<Self> {
        let options: PgConnectOptions = database_url.parse()?;
        let options = options.options([(
            "statement_timeout",
            format!("{}ms", statement_timeout.as_millis().max(1)),
        )]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(Self::new(pool, keyring))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Checks that Postgres answers: a connection is taken from the pool, which pings it first.
    pub async fn ping(&self) -> Result<()> {
        self.pool.acquire().await?;
        Ok(())
    }

    /// The configuration epoch: a counter every change to what a gateway caches per grant (the
    /// grant, its server, its policy's current version, the pinned tools) moves forward when it
    /// commits (migration `config_epoch`). A gateway that sees it move empties its cache.
    pub async fn config_epoch(&self) -> Result<i64> {
        let mut tx = self.begin_unscoped().await?;
        let epoch = sqlx::query_scalar!(r#"select gatehouse_config_epoch() as "epoch!""#)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(epoch)
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Applies every pending migration, then makes sure the audit log's partitions exist ahead.
    pub async fn migrate(&self) -> Result<()> {
        crate::MIGRATOR.run(&self.pool).await?;
        crate::audit::ensure_partitions_ahead(&self.pool).await?;
        Ok(())
    }

    /// Opens a transaction scoped to `org`: it runs as the restricted `gatehouse_app` role with
    /// `gatehouse.org_id` set, so row-level security hides every other organisation's rows even
    /// from a query that forgets its own `organisation_id` filter.
    pub async fn begin(&self, org: OrgId) -> Result<OrgTx> {
        // One round trip: the transaction starts already narrowed to the role and organisation.
        let tx = self
            .pool
            .begin_with(sqlx::AssertSqlSafe(format!(
                "begin; {}",
                OrgTx::scope_statement(org)
            )))
            .await?;
        Ok(OrgTx {
            tx,
            org,
            keyring: self.keyring.clone(),
        })
    }

    /// A transaction as the restricted role with no organisation: only the narrow security-definer
    /// lookups (token hashes) return anything in it.
    pub(crate) async fn begin_unscoped(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql("set local role gatehouse_app")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// A transaction scoped to one organisation. Functions that take it filter by [`OrgTx::org`] in
/// their SQL as well; row-level security is the second fence, not the only one.
#[derive(Debug)]
pub struct OrgTx {
    tx: Transaction<'static, Postgres>,
    org: OrgId,
    keyring: Keyring,
}

impl OrgTx {
    /// Narrows an open transaction to `org` for the rest of its life.
    pub(crate) async fn scope(
        mut tx: Transaction<'static, Postgres>,
        org: OrgId,
        keyring: Keyring,
    ) -> Result<Self> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(Self::scope_statement(org)))
            .execute(&mut *tx)
            .await?;
        Ok(OrgTx { tx, org, keyring })
    }

    /// The statements that narrow a transaction to `org`. The organisation is a UUID formatted by
    /// us, so it is safe inside the text; one simple query sets both in one round trip.
    fn scope_statement(org: OrgId) -> String {
        format!(
            "set local role gatehouse_app; select set_config('gatehouse.org_id', '{}', true)",
            org.as_uuid()
        )
    }

    /// Re-scopes the transaction to another organisation, for a writer that stores several
    /// organisations' rows in one commit (the audit ingester). Row-level security follows at once;
    /// every function called afterwards filters by the new [`OrgTx::org`].
    pub(crate) async fn rescope(&mut self, org: OrgId) -> Result<()> {
        if org != self.org {
            sqlx::query!(
                "select set_config('gatehouse.org_id', $1, true)",
                org.to_string()
            )
            .fetch_one(&mut *self.tx)
            .await?;
            self.org = org;
        }
        Ok(())
    }

    pub fn org(&self) -> OrgId {
        self.org
    }

    pub(crate) fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// The raw connection, for tests that prove row-level security holds against hand-written SQL.
    /// Product code calls the use-case functions instead.
    #[doc(hidden)]
    pub fn raw_connection_for_tests(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}
