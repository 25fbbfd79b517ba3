//! Tool definitions as an upstream's `tools/list` answer gives them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One tool from a `tools/list` result. Unknown fields are kept in `extra` so that a definition
/// read here and written back is the one the upstream sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "empty_object_schema")]
    pub input_schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// The MCP tool annotations. They come from the upstream and are hints, never trusted:
/// the spec's defaults (readOnly false, destructive true, idempotent false, openWorld true)
/// apply when a hint is absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object"})
}

impl ToolDef {
    /// The names of the tool's top-level arguments, from `inputSchema.properties`.
    pub fn argument_names(&self) -> impl Iterator<Item = &str> {
        self.input_schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|props| props.keys().map(String::as_str))
    }

    /// The JSON Schema of one argument, following a dotted path through nested `properties`.
    /// `None` when the schema does not declare it.
    pub fn argument_schema(&self, dotted: &[&str]) -> Option<&Value> {
        let mut schema = &self.input_schema;
        for segment in dotted {
            schema = schema.get("properties")?.get(*segment)?;
        }
        Some(schema)
    }
}

/// Errors reading a tool list.
#[derive(Debug, thiserror::Error)]
pub enum ToolListError {
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "expected a tools/list result: {{\"tools\": [...]}}, a JSON-RPC response with that result, or an array of tools"
    )]
    Shape,
    #[error("tool {index} is not a valid tool definition: {source}")]
    Tool {
        index: usize,
        source: serde_json::Error,
    },
}

/// Reads the tools of a `tools/list` answer in any of the forms people save it in: the result
/// object, the whole JSON-RPC response, or a bare array of tools.
pub fn parse_tool_list(text: &str) -> Result<Vec<ToolDef>, ToolListError> {
    let value: Value = serde_json::from_str(text)?;
    let tools = match &value {
        Value::Array(items) => items,
        Value::Object(obj) => obj
            .get("tools")
            .or_else(|| obj.get("result").and_then(|r| r.get("tools")))
            .and_then(Value::as_array)
            .ok_or(ToolListError::Shape)?,
        _ => return Err(ToolListError::Shape),
    };
    tools
        .iter()
        .enumerate()
        .map(|(index, tool)| {
            serde_json::from_value(tool.clone())
                .map_err(|source| ToolListError::Tool { index, source })
        })
        .collect()
}
