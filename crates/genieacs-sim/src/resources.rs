//! The 7 resources of the GenieACS MCP server: three fixed lists and four templates.
//! Contents are JSON text, exactly what the NBI query behind each would return.

use serde_json::{Value, json};

use crate::acs::Acs;

/// The `resources/list` result: the resources with fixed URIs.
pub(crate) fn list_result() -> Value {
    json!({"resources": [
        {"uri": "genieacs://devices/list", "name": "devices", "title": "All devices",
         "description": "Every device's id and last inform time (capped by the device limit).", "mimeType": "application/json"},
        {"uri": "genieacs://presets/list", "name": "presets", "title": "Presets",
         "description": "All presets stored on the ACS.", "mimeType": "application/json"},
        {"uri": "genieacs://provisions/list", "name": "provisions", "title": "Provisions",
         "description": "All provision scripts stored on the ACS.", "mimeType": "application/json"},
    ]})
}

/// The `resources/templates/list` result.
pub(crate) fn templates_result() -> Value {
    json!({"resourceTemplates": [
        {"uriTemplate": "genieacs://device/{id}", "name": "device", "title": "Device",
         "description": "One device's full document (parameters, tags, last inform).", "mimeType": "application/json"},
        {"uriTemplate": "genieacs://file/{name}", "name": "file", "title": "File",
         "description": "Metadata of a file stored on the ACS (firmware images, configuration files).", "mimeType": "application/json"},
        {"uriTemplate": "genieacs://tasks/{id}", "name": "tasks", "title": "Device tasks",
         "description": "Pending and faulted tasks of a device.", "mimeType": "application/json"},
        {"uriTemplate": "genieacs://faults/{id}", "name": "faults", "title": "Device faults",
         "description": "Faults of a device's tasks, with CWMP fault codes and retry counts.", "mimeType": "application/json"},
    ]})
}

/// Reads a resource; `None` when the URI names no resource (JSON-RPC error -32002).
pub(crate) fn read(acs: &Acs, uri: &str, device_limit: usize) -> Option<Value> {
    let rest = uri.strip_prefix("genieacs://")?;
    let (kind, arg) = rest.split_once('/')?;
    let arg = percent_decode(arg);
    let body = match (kind, arg.as_str()) {
        ("devices", "list") => acs
            .find_devices(&json!({}), Some(&["_lastInform"]), device_limit)
            .ok()?,
        ("presets", "list") => acs.presets(),
        ("provisions", "list") => acs.provisions(),
        (_, "") => return None,
        ("device", id) => acs.find_devices(&json!({"_id": id}), None, 1).ok()?,
        ("file", name) => acs.files_named(name),
        ("tasks", id) => Value::Array(acs.tasks_of(id)),
        ("faults", id) => Value::Array(acs.faults_of(id)),
        _ => return None,
    };
    Some(
        json!({"contents": [{"uri": uri, "mimeType": "application/json", "text": body.to_string()}]}),
    )
}

/// Decodes `%XX` escapes (ids in URIs may be percent-encoded, as in NBI paths).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes() {
        assert_eq!(percent_decode("00236A-Smart%20RG"), "00236A-Smart RG");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
