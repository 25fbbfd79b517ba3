//! Handlers, one module per area; each handler's extractor states the role it needs.

pub(crate) mod account;
pub(crate) mod admin_events;
pub(crate) mod api_keys;
pub(crate) mod approvals;
pub(crate) mod audit;
pub(crate) mod audit_chart;
pub(crate) mod audit_event;
pub(crate) mod audit_export;
pub(crate) mod audit_verify;
pub(crate) mod drifts;
pub(crate) mod grants;
pub(crate) mod invitations;
pub(crate) mod members;
pub(crate) mod policies;
pub(crate) mod policy_builder;
pub(crate) mod policy_versions;
pub(crate) mod servers;
pub(crate) mod shown_once;
pub(crate) mod webhook;

/// A date and time as pages show them: UTC, to the minute.
pub(crate) fn when(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// Checks a text field's length in characters, naming the field in the message.
pub(crate) fn check_len(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    errors: &mut Vec<String>,
) {
    let n = value.trim().chars().count();
    if n < min {
        errors.push(if min == 1 {
            format!("{field} is required.")
        } else {
            format!("{field} needs at least {min} characters.")
        });
    } else if n > max {
        errors.push(format!("{field} can have at most {max} characters."));
    }
}
