//! Where a JSON Pointer's value sits in a document's text, so a page can highlight the rule that
//! decided a call (or that a finding names) at its lines.

use jsonc_parser::ast::Value as Ast;

use crate::Pointer;
use crate::diagnostic::LineIndex;
use crate::parse::{range_of, strict_options};

/// The lines (1-based, inclusive) a pointer's value covers; for an object member, its name too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    pub first_line: usize,
    pub last_line: usize,
}

impl Span {
    pub fn contains(&self, line: usize) -> bool {
        (self.first_line..=self.last_line).contains(&line)
    }
}

/// Finds `pointer` in `text`; `None` when the text is not strict JSON or holds no such value.
/// The root pointer covers the whole document.
pub fn locate(text: &str, pointer: &Pointer) -> Option<Span> {
    if text.len() > crate::MAX_DOCUMENT_BYTES {
        return None;
    }
    let ast = jsonc_parser::parse_to_ast(
        text,
        &jsonc_parser::CollectOptions::default(),
        &strict_options(),
    )
    .ok()?
    .value?;
    let mut range = range_of(&ast);
    let mut node = &ast;
    for token in pointer.tokens() {
        match node {
            Ast::Object(obj) => {
                let prop = obj.get(&token)?;
                range = prop.range;
                node = &prop.value;
            }
            Ast::Array(arr) => {
                // RFC 6901: an index is `0` or digits without a leading zero.
                if token.len() > 1 && token.starts_with('0') {
                    return None;
                }
                let index: usize = token.parse().ok()?;
                node = arr.elements.get(index)?;
                range = range_of(node);
            }
            _ => return None,
        }
    }
    let lines = LineIndex::new(text);
    let (first_line, _) = lines.line_column(range.start);
    let (last_line, _) = lines.line_column(range.end.saturating_sub(1).max(range.start));
    Some(Span {
        first_line,
        last_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
  "version": "1",
  "default": "deny",
  "hide": ["delete_task", "a/b"],
  "tools": {
    "retry_task": {
      "limits": [
        {"counter": "retry", "window": "minute", "max": 30}
      ]
    },
    "a/b": {}
  }
}"#;

    fn at(p: &str) -> Option<(usize, usize)> {
        let mut pointer = Pointer::root();
        for t in p.split('/').skip(1) {
            pointer = pointer.push(t.replace("~1", "/").replace("~0", "~"));
        }
        locate(DOC, &pointer).map(|s| (s.first_line, s.last_line))
    }

    #[test]
    fn finds_members_array_elements_and_escaped_names() {
        assert_eq!(at(""), Some((1, 13)));
        assert_eq!(at("/default"), Some((3, 3)));
        assert_eq!(at("/hide/0"), Some((4, 4)));
        assert_eq!(at("/tools/retry_task"), Some((6, 10)));
        assert_eq!(at("/tools/retry_task/limits/0"), Some((8, 8)));
        assert_eq!(at("/tools/a~1b"), Some((11, 11)));
    }

    #[test]
    fn absent_values_and_bad_text_are_none() {
        assert_eq!(at("/tools/reboot_device"), None);
        assert_eq!(at("/hide/2"), None);
        assert_eq!(at("/hide/01"), None);
        assert_eq!(at("/default/x"), None);
        assert_eq!(locate("{", &Pointer::root()), None);
        assert_eq!(locate("// x\n{}", &Pointer::root()), None);
    }
}
