//! A useful subset of MongoDB query semantics, enough for the queries people send to the GenieACS
//! NBI: field equality on dotted paths, `$eq $ne $gt $gte $lt $lte $in $nin $regex $options $exists`,
//! and `$and $or $nor` at the top level or nested.
//!
//! Two conveniences match what GenieACS users expect: a path that ends on a parameter object (one
//! with `_value`) compares against its `_value`, so `{"InternetGatewayDevice.DeviceInfo.SoftwareVersion":
//! "2.1"}` and `{"…SoftwareVersion._value": "2.1"}` mean the same; and as in MongoDB, a condition on an
//! array field (such as `_tags`) matches when any element matches.
//! Timestamps are ISO 8601 strings, which compare correctly as strings.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Map, Value};

/// A query that could not be understood; the NBI answers such queries with 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(pub String);

/// A parsed query, ready to test documents against.
#[derive(Debug)]
pub struct Query(Node);

#[derive(Debug)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Nor(Vec<Node>),
    Field(String, Vec<Cond>),
}

#[derive(Debug)]
enum Cond {
    Eq(Value),
    Ne(Value),
    Cmp(Ordering, bool, Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Regex(Regex),
    Exists(bool),
}

impl Query {
    /// Parses a query document. `{}` matches everything.
    pub fn parse(query: &Value) -> Result<Self, QueryError> {
        parse_doc(query).map(Query)
    }

    /// Whether `doc` satisfies the query.
    pub fn matches(&self, doc: &Value) -> bool {
        eval(&self.0, doc)
    }
}

fn err(msg: impl Into<String>) -> QueryError {
    QueryError(msg.into())
}

fn parse_doc(q: &Value) -> Result<Node, QueryError> {
    let obj = q
        .as_object()
        .ok_or_else(|| err("query must be a JSON object"))?;
    let mut nodes = Vec::with_capacity(obj.len());
    for (key, val) in obj {
        match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let arr = val
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| err(format!("{key} must be a non-empty array")))?;
                let subs = arr.iter().map(parse_doc).collect::<Result<Vec<_>, _>>()?;
                nodes.push(match key.as_str() {
                    "$and" => Node::And(subs),
                    "$or" => Node::Or(subs),
                    _ => Node::Nor(subs),
                });
            }
            k if k.starts_with('$') => return Err(err(format!("unknown top level operator: {k}"))),
            path => nodes.push(Node::Field(path.to_owned(), parse_conds(val)?)),
        }
    }
    Ok(Node::And(nodes))
}

fn parse_conds(val: &Value) -> Result<Vec<Cond>, QueryError> {
    let Some(obj) = val
        .as_object()
        .filter(|o| o.keys().any(|k| k.starts_with('$')))
    else {
        return Ok(vec![Cond::Eq(val.clone())]);
    };
    let options = obj.get("$options").and_then(Value::as_str).unwrap_or("");
    let mut conds = Vec::with_capacity(obj.len());
    for (op, arg) in obj {
        let cond = match op.as_str() {
            "$eq" => Cond::Eq(arg.clone()),
            "$ne" => Cond::Ne(arg.clone()),
            "$gt" => Cond::Cmp(Ordering::Greater, false, arg.clone()),
            "$gte" => Cond::Cmp(Ordering::Greater, true, arg.clone()),
            "$lt" => Cond::Cmp(Ordering::Less, false, arg.clone()),
            "$lte" => Cond::Cmp(Ordering::Less, true, arg.clone()),
            "$in" | "$nin" => {
                let list = arg
                    .as_array()
                    .ok_or_else(|| err(format!("{op} needs an array")))?
                    .clone();
                if op == "$in" {
                    Cond::In(list)
                } else {
                    Cond::Nin(list)
                }
            }
            "$regex" => Cond::Regex(regex(arg, options)?),
            "$options" => continue,
            "$exists" => Cond::Exists(match arg {
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => return Err(err("$exists needs a boolean")),
            }),
            other => return Err(err(format!("unknown operator: {other}"))),
        };
        conds.push(cond);
    }
    Ok(conds)
}

fn regex(pattern: &Value, options: &str) -> Result<Regex, QueryError> {
    let pattern = pattern
        .as_str()
        .ok_or_else(|| err("$regex needs a string"))?;
    let mut flags = String::new();
    for c in options.chars() {
        match c {
            'i' | 'm' | 's' | 'x' => flags.push(c),
            _ => return Err(err(format!("invalid regex option: {c}"))),
        }
    }
    let full = if flags.is_empty() {
        pattern.to_owned()
    } else {
        format!("(?{flags}){pattern}")
    };
    Regex::new(&full).map_err(|e| err(format!("invalid regex: {e}")))
}

fn eval(node: &Node, doc: &Value) -> bool {
    match node {
        Node::And(ns) => ns.iter().all(|n| eval(n, doc)),
        Node::Or(ns) => ns.iter().any(|n| eval(n, doc)),
        Node::Nor(ns) => !ns.iter().any(|n| eval(n, doc)),
        Node::Field(path, conds) => {
            let found = lookup(doc, path);
            conds.iter().all(|c| test(c, found))
        }
    }
}

/// Resolves a dotted path; a parameter object (with `_value`) resolves to its value.
fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = doc;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(map) => map.get(seg)?,
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(leaf_value(cur))
}

fn leaf_value(v: &Value) -> &Value {
    match v {
        Value::Object(map) => map.get("_value").unwrap_or(v),
        _ => v,
    }
}

fn test(cond: &Cond, found: Option<&Value>) -> bool {
    match cond {
        Cond::Exists(want) => found.is_some() == *want,
        // As in MongoDB, `$ne` and `$nin` also match documents that lack the field.
        Cond::Ne(v) => !found.is_some_and(|f| any_elem(f, |x| json_eq(x, v))),
        Cond::Nin(vs) => !found.is_some_and(|f| any_elem(f, |x| vs.iter().any(|v| json_eq(x, v)))),
        Cond::Eq(v) => match found {
            Some(f) => json_eq(f, v) || any_elem(f, |x| json_eq(x, v)),
            None => v.is_null(),
        },
        Cond::In(vs) => match found {
            Some(f) => any_elem(f, |x| vs.iter().any(|v| json_eq(x, v))),
            None => vs.iter().any(Value::is_null),
        },
        Cond::Cmp(dir, or_equal, v) => found.is_some_and(|f| {
            any_elem(f, |x| match compare(x, v) {
                Some(Ordering::Equal) => *or_equal,
                Some(o) => o == *dir,
                None => false,
            })
        }),
        Cond::Regex(re) => {
            found.is_some_and(|f| any_elem(f, |x| x.as_str().is_some_and(|s| re.is_match(s))))
        }
    }
}

/// Applies `pred` to the value, or to each element when it is an array.
fn any_elem(v: &Value, pred: impl Fn(&Value) -> bool) -> bool {
    match v {
        Value::Array(items) => items.iter().map(leaf_value).any(pred),
        other => pred(other),
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Comparison within one BSON-like type class; values of different types never compare.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Applies an NBI-style projection (comma-separated dotted paths) to a document. `_id` is always kept.
pub fn project(doc: &Value, paths: &[&str]) -> Value {
    let mut out = Map::new();
    if let Some(id) = doc.get("_id") {
        out.insert("_id".into(), id.clone());
    }
    for path in paths {
        let path = path.trim();
        if path.is_empty() {
            continue;
        }
        let mut src = doc;
        let mut ok = true;
        for seg in path.split('.') {
            match src.get(seg) {
                Some(v) => src = v,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            insert_path(&mut out, path, src.clone());
        }
    }
    Value::Object(out)
}

fn insert_path(out: &mut Map<String, Value>, path: &str, val: Value) {
    let mut segs = path.split('.').peekable();
    let mut cur = out;
    while let Some(seg) = segs.next() {
        if segs.peek().is_none() {
            cur.insert(seg.to_owned(), val);
            return;
        }
        let next = cur
            .entry(seg.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        let Value::Object(map) = next else { return };
        cur = map;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "_id": "00236A-SmartRG585-SMRT00236a42",
            "_tags": ["lab", "gold"],
            "_lastInform": "2025-06-01T12:00:00.000Z",
            "InternetGatewayDevice": {"DeviceInfo": {
                "SoftwareVersion": {"_value": "2.1.0", "_type": "xsd:string"},
                "UpTime": {"_value": 3600, "_type": "xsd:unsignedInt"}
            }}
        })
    }

    fn m(q: Value) -> bool {
        Query::parse(&q).unwrap().matches(&doc())
    }

    #[test]
    fn operators() {
        assert!(m(json!({})));
        assert!(m(json!({"_id": "00236A-SmartRG585-SMRT00236a42"})));
        assert!(m(json!({"_tags": "lab"})));
        assert!(!m(json!({"_tags": "vip"})));
        assert!(m(json!({"_tags": {"$in": ["vip", "gold"]}})));
        assert!(m(json!({"_tags": {"$nin": ["vip"]}})));
        assert!(m(json!({"_id": {"$regex": "^00236a-", "$options": "i"}})));
        assert!(m(
            json!({"InternetGatewayDevice.DeviceInfo.SoftwareVersion": "2.1.0"})
        ));
        assert!(m(
            json!({"InternetGatewayDevice.DeviceInfo.SoftwareVersion._value": {"$ne": "1.0"}})
        ));
        assert!(m(
            json!({"InternetGatewayDevice.DeviceInfo.UpTime": {"$gte": 3600, "$lt": 4000}})
        ));
        assert!(!m(
            json!({"InternetGatewayDevice.DeviceInfo.UpTime": {"$gt": 3600}})
        ));
        assert!(m(
            json!({"_lastInform": {"$lt": "2025-06-02T00:00:00.000Z"}})
        ));
        assert!(m(json!({"Device": {"$exists": false}})));
        assert!(m(json!({"$or": [{"_tags": "vip"}, {"_tags": "lab"}]})));
        assert!(!m(json!({"$and": [{"_tags": "vip"}, {"_tags": "lab"}]})));
        assert!(m(json!({"$nor": [{"_tags": "vip"}]})));
    }

    #[test]
    fn errors() {
        assert!(Query::parse(&json!([1])).is_err());
        assert!(Query::parse(&json!({"$where": "1"})).is_err());
        assert!(Query::parse(&json!({"a": {"$foo": 1}})).is_err());
        assert!(Query::parse(&json!({"a": {"$regex": "("}})).is_err());
    }

    #[test]
    fn projection_keeps_id_and_paths() {
        let p = project(
            &doc(),
            &["InternetGatewayDevice.DeviceInfo.UpTime", "missing.path"],
        );
        assert_eq!(
            p,
            json!({"_id": "00236A-SmartRG585-SMRT00236a42",
                   "InternetGatewayDevice": {"DeviceInfo": {"UpTime": {"_value": 3600, "_type": "xsd:unsignedInt"}}}})
        );
    }
}
