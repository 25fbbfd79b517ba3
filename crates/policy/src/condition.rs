//! Evaluating `require` and `deny_if` conditions against a call's arguments.

use std::cmp::Ordering;

use serde_json::Value;

use crate::model::{Condition, Op};

/// The outcome of one condition. `Unknown` (the argument is absent or of a type the operator
/// cannot read) fails closed: a `require` is not met and a `deny_if` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Truth {
    True,
    False,
    Unknown(String),
}

impl Condition {
    pub(crate) fn evaluate(&self, arguments: Option<&Value>) -> Truth {
        let found = arguments.and_then(|args| lookup(args, &self.path));
        if self.op == Op::Exists {
            let wanted = self.value.as_bool().unwrap_or(true);
            return truth(found.is_some() == wanted);
        }
        let Some(arg) = found else {
            return Truth::Unknown(format!("argument `{}` is absent", self.path.join(".")));
        };
        match self.op {
            Op::Eq => truth(json_eq(arg, &self.value)),
            Op::Neq => truth(!json_eq(arg, &self.value)),
            Op::In => truth(self.listed(arg)),
            Op::NotIn => truth(!self.listed(arg)),
            Op::Lt | Op::Lte | Op::Gt | Op::Gte => self.compare(arg),
            Op::Regex => match (arg, &self.regex) {
                (Value::String(s), Some(re)) => truth(re.is_match(s)),
                _ => self.unreadable(arg, "a string"),
            },
            Op::Contains => match arg {
                Value::String(s) => match &self.value {
                    Value::String(needle) => truth(s.contains(needle.as_str())),
                    other => truth(s.contains(&other.to_string())),
                },
                Value::Array(items) => truth(items.iter().any(|item| json_eq(item, &self.value))),
                Value::Object(map) => match &self.value {
                    Value::String(key) => truth(map.contains_key(key)),
                    _ => self.unreadable(arg, "an object key"),
                },
                _ => self.unreadable(arg, "a string, an array or an object"),
            },
            Op::Exists => unreachable!("handled above"),
        }
    }

    fn listed(&self, arg: &Value) -> bool {
        self.value
            .as_array()
            .is_some_and(|items| items.iter().any(|item| json_eq(arg, item)))
    }

    fn compare(&self, arg: &Value) -> Truth {
        let Some(bound) = self.value.as_f64() else {
            return Truth::Unknown("the condition's bound is not a number".into());
        };
        // Numeric strings are read as numbers: many tools take every argument as a string.
        let number = match arg {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        let Some(number) = number else {
            return self.unreadable(arg, "a number");
        };
        let ord = number.partial_cmp(&bound).unwrap_or(Ordering::Equal);
        truth(match self.op {
            Op::Lt => ord == Ordering::Less,
            Op::Lte => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Gte => ord != Ordering::Less,
            _ => unreachable!("compare is only called for ordering operators"),
        })
    }

    fn unreadable(&self, arg: &Value, wanted: &str) -> Truth {
        Truth::Unknown(format!(
            "argument `{}` is {}, and `{}` needs {wanted}",
            self.path.join("."),
            json_kind(arg),
            self.op
        ))
    }

    /// The condition as a person would read it: `args.device_id regex "^00236A-"`.
    pub fn describe(&self) -> String {
        if self.op == Op::Exists {
            return match self.value.as_bool() {
                Some(false) => format!("{} is absent", self.path_text),
                _ => format!("{} is present", self.path_text),
            };
        }
        format!("{} {} {}", self.path_text, self.op, self.value)
    }
}

fn truth(b: bool) -> Truth {
    if b { Truth::True } else { Truth::False }
}

/// "a string", "a number"...: a value's JSON type as error messages name it.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Follows a dotted path through objects (by key) and arrays (by index).
fn lookup<'v>(root: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(root, |v, segment| match v {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// JSON equality in which numbers compare by value (`1` equals `1.0`).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}
