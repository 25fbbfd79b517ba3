//! The one error type at the crate boundary.

/// What went wrong in the store, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The row does not exist, or belongs to another organisation (the two are indistinguishable
    /// on purpose). HTTP callers answer 404.
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// A uniqueness rule was broken, e.g. a second server with the same name in an organisation.
    /// The message is fit to show a user; HTTP callers answer 409.
    #[error("{message}")]
    Conflict { constraint: String, message: String },
    /// The input was refused before reaching the database (bad name, bad size). HTTP callers answer 422.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A sealed secret could not be opened: the key that sealed it is not configured, or the data
    /// was tampered with. Operators see this; users get a generic 500.
    #[error("cannot open sealed secret: {0}")]
    Secret(String),
    /// The audit chain of an organisation could not be extended (e.g. an event's day is too far away).
    #[error("audit: {0}")]
    Audit(String),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database failure: logged at the edge, shown as a generic 500.
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::RowNotFound = e {
            return Error::NotFound { what: "row" };
        }
        if let Some(db) = e.as_database_error()
            && let Some(constraint) = db.constraint()
        {
            let message = match constraint {
                "server_name_unique_in_organisation" => {
                    "a server with this name already exists in the organisation"
                }
                "policy_name_unique_in_server" => {
                    "a policy with this name already exists on the server"
                }
                "api_key_name_unique_in_organisation" => {
                    "an API key with this name already exists in the organisation"
                }
                "membership_user_unique_in_organisation" => "the user is already a member",
                "app_user_email_unique" => "an account with this email already exists",
                "policy_version_unique" => "this policy version was published concurrently; retry",
                "approval_open_unique" => "an approval for this call is already open",
                _ if db.is_unique_violation() => "this already exists",
                _ if db.is_foreign_key_violation() => {
                    return Error::NotFound {
                        what: "referenced row",
                    };
                }
                _ if db.is_check_violation() => {
                    return Error::Invalid {
                        field: "value",
                        reason: format!("violates {constraint}"),
                    };
                }
                _ => return Error::Database(e),
            };
            return Error::Conflict {
                constraint: constraint.to_owned(),
                message: message.to_owned(),
            };
        }
        Error::Database(e)
    }
}

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Turns `RowNotFound` into a `NotFound` that names what was looked for.
pub(crate) trait NotFoundExt<T> {
    fn or_not_found(self, what: &'static str) -> Result<T>;
}

impl<T> NotFoundExt<T> for std::result::Result<Option<T>, sqlx::Error> {
    fn or_not_found(self, what: &'static str) -> Result<T> {
        self?.ok_or(Error::NotFound { what })
    }
}
