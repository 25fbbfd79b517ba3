//! The pin of a tool definition: the SHA-256 the control plane stores when it pins a tool and the
//! gateway compares every live definition with.
//!
//! What it covers, and why:
//! - `name`, `title`, `description`, `inputSchema`, `outputSchema` and `annotations`: everything
//!   a model or a person reads to decide what the tool does and what it may be given. `title` is
//!   included because clients show it in place of the name, so a changed title is a changed claim.
//! - Nothing else: `_meta`, `icons`, `execution` and members a later revision adds do not change
//!   what the tool claims to do, and an upstream may vary them (a build id in `_meta`) without a
//!   rug pull. A later revision of this hash may cover more; it would be a new domain label.
//! - An absent member and a member whose value is `null` are the same (neither says anything;
//!   serialisers differ in which they write). Inside a member nothing is dropped: `null` in a
//!   schema is data.
//! - Canonical JSON: object members sorted by their keys' UTF-8 bytes, no insignificant whitespace, strings escaped as `serde_json` writes them, numbers as
//!   `serde_json` prints the parsed number (so `1.0` and `1` differ: a changed spelling of a
//!   number counts as a change, erring on the side of review).
//!
//! The bytes hashed are `gatehouse/tool-pin/v1` followed by a NUL and the canonical JSON of the
//! object holding the covered members, so the hash cannot collide with another use of SHA-256.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The members of a definition the pin covers, in the order they are written (sorted).
pub const PINNED_MEMBERS: [&str; 6] = [
    "annotations",
    "description",
    "inputSchema",
    "name",
    "outputSchema",
    "title",
];

const DOMAIN: &[u8] = b"gatehouse/tool-pin/v1\0";

/// A tool's pin: SHA-256 over the canonical form of its covered members.
pub fn pin_hash(definition: &Value) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(pinned_form(definition).as_bytes());
    h.finalize().into()
}

/// The canonical JSON the pin hashes: an object of the covered members that are present and not
/// `null`, sorted, without whitespace. Anything that is not an object pins as `{}`.
pub fn pinned_form(definition: &Value) -> String {
    let mut out = String::from("{");
    let mut first = true;
    for key in PINNED_MEMBERS {
        match definition.get(key) {
            None | Some(Value::Null) => continue,
            Some(value) => {
                if !first {
                    out.push(',');
                }
                first = false;
                write_string(&mut out, key);
                out.push(':');
                write_canonical(&mut out, value);
            }
        }
    }
    out.push('}');
    out
}

/// Canonical JSON of any value: object members sorted by key (UTF-8 byte order), no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, value)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_canonical(out, value);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push_str(&Value::String(s.to_owned()).to_string());
}

#[cfg(test)]
mod tests;
