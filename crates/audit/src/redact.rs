//! What of a call's arguments the audit log keeps: their keys always, their values only where the
//! policy opts in (`record_arguments`), and never the values of keys that look like secrets.
//!
//! Pure functions, no I/O: the gateway calls them on the request path.

use serde_json::{Map, Value};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Fragments that make a key look like a secret wherever they appear in it (compared after
/// lowercasing and dropping everything but letters and digits, so `api_key`, `apiKey` and
/// `API-KEY` are one key).
const SECRET_FRAGMENTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "token",
    "secret",
    "authorization",
    "cookie",
    "credential",
    "apikey",
    "privatekey",
    "private",
    "signature",
    "sessionid",
    "bearer",
];

/// Words that make a key look like a secret when they stand alone as one of its words
/// (`key`, `ssh_key`, `wifiKey`), but not inside another word (`keyboard`, `monkey`).
const SECRET_WORDS: &[&str] = &["key", "keys", "pwd", "pass", "pin", "auth", "otp"];

/// True when `key` looks like it names a secret: `password`, `X-Auth-Token`, `client_secret`,
/// `Authorization`, `Cookie`, `api_key`, `privateKey`, `ssh_key`, `KeyPassphrase`, …
pub fn is_secret_key(key: &str) -> bool {
    let squashed: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if SECRET_FRAGMENTS.iter().any(|f| squashed.contains(f)) {
        return true;
    }
    words(key).any(|w| SECRET_WORDS.contains(&w.as_str()))
}

/// The words of a key: split at anything that is not a letter or digit, and where a lowercase
/// letter or digit is followed by an uppercase one (`wifiKey` → `wifi`, `key`).
fn words(key: &str) -> impl Iterator<Item = String> + '_ {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out.into_iter()
}

/// A dotted parameter path's last segment (`InternetGatewayDevice.…​.KeyPassphrase` →
/// `KeyPassphrase`), for values that name a parameter and then give its value.
fn last_segment(path: &str) -> &str {
    path.rsplit(['.', '/']).next().unwrap_or(path)
}

/// A copy of `value` with the value of every secret-looking key replaced by [`REDACTED`], at
/// every depth. Arrays of the form `["<parameter path>", value, …]` whose path ends in a
/// secret-looking name (how TR-069 tools such as GenieACS's `set_parameter` pass values) have
/// everything after the path redacted too.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => {
            let names_secret = matches!(
                items.first(),
                Some(Value::String(name)) if items.len() >= 2 && is_secret_key(last_segment(name))
            );
            Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        if names_secret && i > 0 {
                            Value::String(REDACTED.to_owned())
                        } else {
                            redact(v)
                        }
                    })
                    .collect(),
            )
        }
        scalar => scalar.clone(),
    }
}

/// What the audit log stores of a call's `arguments`: with `record_values` (the policy's
/// `record_arguments` for the tool) the arguments with secrets redacted, an object; otherwise the
/// sorted list of the top-level argument keys, an array. An absent or non-object `arguments`
/// gives an empty list (or the redacted value itself when values are recorded).
pub fn audited_arguments(arguments: Option<&Value>, record_values: bool) -> Value {
    match (arguments, record_values) {
        (Some(args), true) => redact(args),
        (Some(Value::Object(map)), false) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Array(keys.into_iter().map(|k| Value::String(k.clone())).collect())
        }
        (_, _) => Value::Array(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_looking_keys() {
        for k in [
            "password",
            "Password",
            "new_password",
            "X-Auth-Token",
            "access_token",
            "client_secret",
            "Authorization",
            "cookie",
            "Set-Cookie",
            "credentials",
            "api_key",
            "apiKey",
            "API-KEY",
            "privateKey",
            "private",
            "ssh_key",
            "key",
            "wifiKey",
            "KeyPassphrase",
            "pwd",
            "auth",
        ] {
            assert!(is_secret_key(k), "{k} should look secret");
        }
        for k in [
            "device_id",
            "parameter",
            "keyboard",
            "monkey",
            "author",
            "tokenizer_name_length",
            "name",
            "query",
            "passenger",
        ] {
            if k == "tokenizer_name_length" {
                // Contains "token": erring towards redaction is the safe side.
                assert!(is_secret_key(k));
                continue;
            }
            assert!(!is_secret_key(k), "{k} should not look secret");
        }
    }

    #[test]
    fn redaction_is_recursive_and_keeps_shape() {
        let args = json!({
            "device_id": "00236A-1",
            "password": "hunter2",
            "nested": {"Authorization": "Bearer abc", "list": [{"api_key": 1, "ok": true}], "keep": [1, 2]},
            "token": {"deep": "object replaced whole"},
            "parameter_values": [
                ["InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.KeyPassphrase", "s3cret", "xsd:string"],
                ["InternetGatewayDevice.ManagementServer.PeriodicInformInterval", 300, "xsd:unsignedInt"]
            ]
        });
        assert_eq!(
            redact(&args),
            json!({
                "device_id": "00236A-1",
                "password": REDACTED,
                "nested": {"Authorization": REDACTED, "list": [{"api_key": REDACTED, "ok": true}], "keep": [1, 2]},
                "token": REDACTED,
                "parameter_values": [
                    ["InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.KeyPassphrase", REDACTED, REDACTED],
                    ["InternetGatewayDevice.ManagementServer.PeriodicInformInterval", 300, "xsd:unsignedInt"]
                ]
            })
        );
        // Scalars and secret-free documents come back unchanged.
        assert_eq!(redact(&json!("password")), json!("password"));
        let plain = json!({"a": [1, {"b": null}], "c": "x"});
        assert_eq!(redact(&plain), plain);
    }

    #[test]
    fn keys_only_unless_the_policy_records_values() {
        let args = json!({"b": 1, "a": {"password": "x"}, "token": "t"});
        assert_eq!(
            audited_arguments(Some(&args), false),
            json!(["a", "b", "token"])
        );
        assert_eq!(
            audited_arguments(Some(&args), true),
            json!({"b": 1, "a": {"password": REDACTED}, "token": REDACTED})
        );
        assert_eq!(audited_arguments(None, true), json!([]));
        assert_eq!(audited_arguments(Some(&json!(3)), false), json!([]));
    }
}
