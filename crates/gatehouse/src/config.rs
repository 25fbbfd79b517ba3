//! Configuration from flags and environment variables (clap reads both), validated here so that
//! every bad value is reported by the name of its variable before anything runs.

use store::secret::{Keyring, SealingKey};

use crate::{PublicUrlArgs, SecretArgs, StoreArgs};

/// Every configuration problem found, each naming its variable.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<String>);

impl Problems {
    pub(crate) fn add(&mut self, var: &str, problem: impl std::fmt::Display) {
        self.0.push(format!("{var}: {problem}"));
    }
}

pub(crate) fn database_url(args: &StoreArgs, problems: &mut Problems) -> Option<String> {
    match args.database_url.as_deref().map(str::trim) {
        None | Some("") => {
            problems.add("DATABASE_URL", "is not set (or pass --database-url)");
            None
        }
        Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => {
            problems.add("DATABASE_URL", "must be a postgres:// URL");
            None
        }
        Some(url) => Some(url.to_owned()),
    }
}

/// The keyring, or `None` with a problem recorded when `required` and missing or malformed.
pub(crate) fn keyring(
    args: &SecretArgs,
    required: bool,
    problems: &mut Problems,
) -> Option<Keyring> {
    let version = match args.secret_key_version.trim().parse::<i32>() {
        Ok(v) if v > 0 => Some(v),
        _ => {
            problems.add("GATEHOUSE_SECRET_KEY_VERSION", "must be a positive integer");
            None
        }
    };
    let current = match args.secret_key.as_deref() {
        None | Some("") if required => {
            problems.add(
                "GATEHOUSE_SECRET_KEY",
                "is not set; generate one with `head -c 32 /dev/urandom | base64`",
            );
            None
        }
        None | Some("") => None,
        Some(text) => match SealingKey::from_base64(version.unwrap_or(1), text) {
            Ok(k) => Some(k),
            Err(e) => {
                problems.add("GATEHOUSE_SECRET_KEY", e);
                None
            }
        },
    };
    let mut previous = Vec::new();
    for item in args
        .previous_secret_keys
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
    {
        if item.is_empty() {
            continue;
        }
        let parsed = item
            .split_once(':')
            .ok_or_else(|| "each entry must be VERSION:BASE64".to_owned())
            .and_then(|(v, k)| {
                let v = v
                    .trim()
                    .parse::<i32>()
                    .map_err(|_| format!("`{v}` is not a key version"))?;
                SealingKey::from_base64(v, k).map_err(|e| format!("key version {v}: {e}"))
            });
        match parsed {
            Ok(k) => previous.push(k),
            Err(e) => problems.add("GATEHOUSE_PREVIOUS_SECRET_KEYS", e),
        }
    }
    let ring = previous
        .into_iter()
        .fold(Keyring::new(current?), Keyring::with_previous);
    Some(ring)
}

pub(crate) fn public_url(args: &PublicUrlArgs, problems: &mut Problems) -> Option<String> {
    let url = args.public_url.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len()
    {
        problems.add("GATEHOUSE_PUBLIC_URL", "must be an http:// or https:// URL");
        return None;
    }
    Some(url.to_owned())
}

/// Parses a lifetime like `90d`, `12h`, `30m`, `3600s` or `2w`.
pub(crate) fn duration(text: &str) -> Result<time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let seconds = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`; use s, m, h, d or w"
            ));
        }
    };
    if n <= 0 || n > 3_650 * 86_400 / seconds {
        return Err(format!("`{text}` must be between 1 second and 10 years"));
    }
    Ok(time::Duration::seconds(n * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(duration("90d"), Ok(time::Duration::days(90)));
        assert_eq!(duration("12h"), Ok(time::Duration::hours(12)));
        assert_eq!(duration("3600"), Ok(time::Duration::hours(1)));
        assert!(duration("0d").is_err());
        assert!(duration("5y").is_err());
        assert!(duration("d").is_err());
    }

    #[test]
    fn every_bad_secret_variable_is_named() {
        let mut problems = Problems::default();
        let args = SecretArgs {
            secret_key: Some("too-short".into()),
            secret_key_version: "zero".into(),
            previous_secret_keys: Some("nonsense".into()),
        };
        assert!(keyring(&args, true, &mut problems).is_none());
        let all = problems.0.join("\n");
        for var in [
            "GATEHOUSE_SECRET_KEY:",
            "GATEHOUSE_SECRET_KEY_VERSION:",
            "GATEHOUSE_PREVIOUS_SECRET_KEYS:",
        ] {
            assert!(all.contains(var), "{all}");
        }
    }
}
