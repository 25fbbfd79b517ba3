//! Identifiers: one newtype per kind of row, so a grant id can never be passed where a server id
//! is expected. Each parses from its textual UUID form and displays as it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id (UUID v4).
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
            /// Wraps an id read from elsewhere (a URL, a database row).
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim())
                    .map(Self)
                    .map_err(|_| crate::Error::invalid($what, format!("`{s}` is not a UUID")))
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

id!(/// An organisation (tenant).
    OrgId, "organisation id");
id!(/// A person.
    UserId, "user id");
id!(/// A registered upstream MCP server; also the last segment of its proxy URL.
    ServerId, "server id");
id!(/// A named policy of a server.
    PolicyId, "policy id");
id!(/// A grant (bearer token for one identity on one server).
    GrantId, "grant id");
id!(/// An admin API key.
    ApiKeyId, "API key id");
id!(/// An audit event; the gateway's request id.
    AuditEventId, "audit event id");
id!(/// A call held for a human decision.
    ApprovalId, "approval id");
