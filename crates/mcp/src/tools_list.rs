//! Filtering a `tools/list` result without disturbing anything else in it.
//!
//! [`filter`] takes the upstream's JSON-RPC response bytes and a predicate, and returns new bytes
//! in which only the rejected elements of `result.tools` are gone. Every other byte is the
//! upstream's: member order, `nextCursor`, `_meta`, unknown members, number spellings and string
//! escapes, because the new text is cut and joined from the original rather than re-serialised.
//! (The kept tools are rejoined with `,`, so whitespace between array elements may change.)
//! It also returns every tool definition seen, so the gateway can compare them with the pinned
//! ones.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::message::value_with_unique_keys;

/// A filtered `tools/list` response.
#[derive(Debug)]
pub struct FilteredList<'a> {
    /// The response to forward: the original bytes when nothing was removed.
    pub bytes: Cow<'a, [u8]>,
    /// Every well-formed tool in the upstream's list, in order, with the predicate's verdict.
    pub tools: Vec<ListedTool>,
    /// Elements of `tools` that were not objects with a string `name` (or had a repeated key):
    /// always removed, since no policy can name them.
    pub malformed: usize,
}

impl FilteredList<'_> {
    /// Whether anything was removed.
    pub fn changed(&self) -> bool {
        matches!(self.bytes, Cow::Owned(_))
    }
}

/// One tool of the list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedTool {
    /// Its name.
    pub name: String,
    /// Its whole definition (name, description, schemas, annotations, `_meta`, …).
    pub definition: Value,
    /// Whether the predicate kept it.
    pub kept: bool,
}

/// A response that is not a `tools/list` result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolsListError {
    /// The upstream answered with a JSON-RPC error: forward it unchanged, it lists no tools.
    #[error("the upstream answered tools/list with an error")]
    ErrorResponse,
    /// Not a JSON-RPC response at all: treat as an upstream failure.
    #[error("the upstream's tools/list response is not a JSON-RPC response: {0}")]
    NotAResponse(String),
    /// A result without a `tools` array: treat as an upstream failure, since unfiltered
    /// tools must never reach the client.
    #[error("the upstream's tools/list result has no tools array")]
    NoToolsArray,
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ListResult<'a> {
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
}

/// Removes the tools `keep` rejects from a `tools/list` response. `keep` gets each tool's name
/// and whole definition.
pub fn filter(
    response: &[u8],
    mut keep: impl FnMut(&str, &Value) -> bool,
) -> Result<FilteredList<'_>, ToolsListError> {
    let text = std::str::from_utf8(response)
        .map_err(|_| ToolsListError::NotAResponse("not UTF-8".into()))?;
    let parsed: Response<'_> =
        serde_json::from_str(text).map_err(|e| ToolsListError::NotAResponse(e.to_string()))?;
    let result = match (parsed.result, parsed.error) {
        (Some(result), None) => result,
        (None, Some(_)) => return Err(ToolsListError::ErrorResponse),
        _ => {
            return Err(ToolsListError::NotAResponse(
                "neither result nor error".into(),
            ));
        }
    };
    let tools_raw = serde_json::from_str::<ListResult<'_>>(result.get())
        .ok()
        .and_then(|r| r.tools)
        .filter(|t| t.get().starts_with('['))
        .ok_or(ToolsListError::NoToolsArray)?;
    let elements: Vec<&RawValue> =
        serde_json::from_str(tools_raw.get()).map_err(|_| ToolsListError::NoToolsArray)?;

    let mut tools = Vec::with_capacity(elements.len());
    let mut kept_text = Vec::with_capacity(elements.len());
    let mut malformed = 0;
    for element in &elements {
        let definition = value_with_unique_keys(element.get()).ok();
        let name = definition
            .as_ref()
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let (Some(definition), Some(name)) = (definition, name) else {
            malformed += 1;
            continue;
        };
        let kept = keep(&name, &definition);
        if kept {
            kept_text.push(element.get());
        }
        tools.push(ListedTool {
            name,
            definition,
            kept,
        });
    }
    if kept_text.len() == elements.len() {
        return Ok(FilteredList {
            bytes: Cow::Borrowed(response),
            tools,
            malformed,
        });
    }
    // `tools_raw` borrows from `text`, so its place in `text` is its address minus text's.
    let start = tools_raw.get().as_ptr() as usize - text.as_ptr() as usize;
    let end = start + tools_raw.get().len();
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    out.push('[');
    out.push_str(&kept_text.join(","));
    out.push(']');
    out.push_str(&text[end..]);
    Ok(FilteredList {
        bytes: Cow::Owned(out.into_bytes()),
        tools,
        malformed,
    })
}

#[cfg(test)]
mod tests;
