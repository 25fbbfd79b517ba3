//! `gatehouse admin`: serves the admin web app. Every flag is also an environment variable.

use anyhow::{Context as _, bail};
use clap::{ArgAction, Args};
use store::Store;

use crate::config::{self, Problems};
use crate::{PublicUrlArgs, SecretArgs, StoreArgs};

#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// The address to listen on (host:port).
    #[arg(long, env = "GATEHOUSE_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    listen: String,
    /// Allow upstream servers on loopback and private networks (self-hosted GenieACS usually lives
    /// on one). Link-local and cloud metadata addresses are refused whatever this says.
    #[arg(
        long,
        env = "GATEHOUSE_ALLOW_PRIVATE_UPSTREAMS",
        default_value_t = false,
        action = ArgAction::Set,
        value_name = "true|false"
    )]
    allow_private_upstreams: bool,
    /// The Redis channel approval decisions are announced on (with REDIS_URL).
    #[arg(
        long,
        env = "GATEHOUSE_APPROVAL_CHANNEL",
        default_value = gateway::DEFAULT_APPROVAL_CHANNEL
    )]
    approval_channel: String,
    #[command(flatten)]
    secrets: SecretArgs,
    #[command(flatten)]
    public: PublicUrlArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let mut problems = Problems::default();
    let database_url = config::database_url(&args.store, &mut problems);
    let keyring = config::keyring(&args.secrets, true, &mut problems);
    let public_url = config::public_url(&args.public, &mut problems);
    let listen: Option<std::net::SocketAddr> = match args.listen.trim().parse() {
        Ok(a) => Some(a),
        Err(_) => {
            problems
                .0
                .push("GATEHOUSE_ADMIN_LISTEN: must be host:port, e.g. 127.0.0.1:8081".into());
            None
        }
    };
    if args.approval_channel.trim().is_empty() {
        problems.add("GATEHOUSE_APPROVAL_CHANNEL", "must not be empty");
    }
    let (true, Some(database_url), Some(keyring), Some(public_url), Some(listen)) = (
        problems.0.is_empty(),
        database_url,
        keyring,
        public_url,
        listen,
    ) else {
        bail!("invalid configuration:\n  {}", problems.0.join("\n  "));
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let store = Store::connect(&database_url, keyring)
        .await
        .context("connecting to the database")?;
    let mut config = admin::AdminConfig::for_public_url(&public_url, args.allow_private_upstreams);
    config.redis = match args
        .store
        .redis_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        Some(url) => Some(redis::Client::open(url).context("REDIS_URL")?),
        None => None,
    };
    config.approval_channel = args.approval_channel.trim().to_owned();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, "admin web app listening");
    admin::serve(listener, admin::AppState::new(store, config))
        .await
        .context("serving the admin web app")
}

#[cfg(test)]
mod tests {
    /// The admin app does not depend on the gateway, so it names the gateway's channels itself:
    /// the names must be the same, or decisions and new pins would be announced where no gateway
    /// listens.
    #[test]
    fn the_admin_app_announces_on_the_gateways_channels() {
        assert_eq!(
            admin::DEFAULT_APPROVAL_CHANNEL,
            gateway::DEFAULT_APPROVAL_CHANNEL
        );
        assert_eq!(
            admin::INVALIDATION_CHANNEL,
            gateway::DEFAULT_INVALIDATION_CHANNEL
        );
    }
}
