//! JSON Pointers (RFC 6901) that name the rule behind every decision and the place of every error.

use std::fmt;

/// A JSON Pointer into a policy document, such as `/tools/retry_task/limits/0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Pointer(String);

impl Pointer {
    /// The pointer to the whole document (the empty string).
    pub fn root() -> Self {
        Self(String::new())
    }

    /// This pointer extended by one reference token, escaped as RFC 6901 says (`~` → `~0`, `/` → `~1`).
    pub fn push(&self, token: impl fmt::Display) -> Self {
        let token = token.to_string();
        let mut out = String::with_capacity(self.0.len() + token.len() + 1);
        out.push_str(&self.0);
        out.push('/');
        for c in token.chars() {
            match c {
                '~' => out.push_str("~0"),
                '/' => out.push_str("~1"),
                c => out.push(c),
            }
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The unescaped reference tokens of this pointer.
    pub fn tokens(&self) -> impl Iterator<Item = String> + '_ {
        self.0
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("/")
        } else {
            f.write_str(&self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_unescapes_tokens() {
        let p = Pointer::root().push("tools").push("a/b~c").push(0);
        assert_eq!(p.as_str(), "/tools/a~1b~0c/0");
        assert_eq!(p.tokens().collect::<Vec<_>>(), ["tools", "a/b~c", "0"]);
        assert_eq!(Pointer::root().to_string(), "/");
    }
}
