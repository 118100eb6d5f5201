//! Reading a tool's arguments, with messages that name the argument, what it should be and what came.

use serde_json::{Map, Value};

use crate::ingest::batch::json_kind;

/// A wrong argument; the tool answers with `isError: true` and this message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

/// A tool's arguments.
pub struct Args<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Args<'a> {
    /// Wraps the arguments; refuses any name not in `known`.
    pub fn new(map: &'a Map<String, Value>, known: &[&str]) -> Result<Self, ArgError> {
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ArgError(format!(
                "unknown argument {unknown:?}; expected {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        Ok(Args { map })
    }

    /// The value of an argument, None when absent or null.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// A required string.
    pub fn string(&self, name: &str) -> Result<&'a str, ArgError> {
        match self.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(wrong(name, "a string", other)),
            None => Err(ArgError(format!("missing required argument {name:?}"))),
        }
    }

    /// A required, non-blank string of at most `max` bytes.
    pub fn text(&self, name: &str, max: usize) -> Result<&'a str, ArgError> {
        let s = self.string(name)?;
        if s.trim().is_empty() {
            return Err(ArgError(format!("{name} must not be empty")));
        }
        if s.len() > max {
            return Err(ArgError(format!(
                "{name} must be at most {max} bytes, got {}",
                s.len()
            )));
        }
        Ok(s)
    }

    /// An optional string.
    pub fn opt_string(&self, name: &str) -> Result<Option<&'a str>, ArgError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong(name, "a string", other)),
        }
    }

    /// An optional integer within `min..=max`, `default` when absent.
    pub fn int(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64, ArgError> {
        let v = match self.get(name) {
            None => return Ok(default),
            Some(v) => v,
        };
        let n = match v {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            }),
            _ => None,
        }
        .ok_or_else(|| wrong(name, "an integer", v))?;
        if n < min || n > max {
            return Err(ArgError(format!(
                "{name} must be from {min} to {max}, got {n}"
            )));
        }
        Ok(n)
    }

    /// An optional number within `min..=max`, `default` when absent.
    pub fn number(&self, name: &str, default: f64, min: f64, max: f64) -> Result<f64, ArgError> {
        let v = match self.get(name) {
            None => return Ok(default),
            Some(v) => v,
        };
        let x = v.as_f64().ok_or_else(|| wrong(name, "a number", v))?;
        if !(min..=max).contains(&x) {
            return Err(ArgError(format!(
                "{name} must be from {min} to {max}, got {x}"
            )));
        }
        Ok(x)
    }

    /// A required array of at least one and at most `max` items.
    pub fn array(&self, name: &str, max: usize) -> Result<&'a [Value], ArgError> {
        let items = match self.get(name) {
            Some(Value::Array(items)) => items,
            Some(other) => return Err(wrong(name, "an array", other)),
            None => return Err(ArgError(format!("missing required argument {name:?}"))),
        };
        if items.is_empty() {
            return Err(ArgError(format!(
                "{name} must hold at least one item, got none"
            )));
        }
        if items.len() > max {
            return Err(ArgError(format!(
                "{name} must hold at most {max} items per call, got {}",
                items.len()
            )));
        }
        Ok(items)
    }

    /// An optional array of at most `max` strings, empty when absent.
    pub fn strings(&self, name: &str, max: usize) -> Result<Vec<String>, ArgError> {
        let items = match self.get(name) {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(wrong(name, "an array of strings", other)),
        };
        if items.len() > max {
            return Err(ArgError(format!(
                "{name} must hold at most {max} items, got {}",
                items.len()
            )));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong(&format!("{name}[{i}]"), "a string", other)),
            })
            .collect()
    }

    /// An optional object.
    pub fn object(&self, name: &str) -> Result<Option<&'a Map<String, Value>>, ArgError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(wrong(name, "an object", other)),
        }
    }
}

fn wrong(name: &str, expected: &str, got: &Value) -> ArgError {
    ArgError(format!("{name} must be {expected}, got {}", json_kind(got)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn messages_name_the_argument() {
        let m = map(json!({"query": 5, "limit": "ten", "threshold": 2.0, "items": []}));
        let a = Args::new(&m, &["query", "limit", "threshold", "items"]).unwrap();
        assert_eq!(
            a.string("query").unwrap_err().0,
            "query must be a string, got a number"
        );
        assert_eq!(
            a.int("limit", 10, 1, 1000).unwrap_err().0,
            "limit must be an integer, got a string"
        );
        assert_eq!(
            a.number("threshold", 0.7, -1.0, 1.0).unwrap_err().0,
            "threshold must be from -1 to 1, got 2"
        );
        assert_eq!(
            a.array("items", 3).unwrap_err().0,
            "items must hold at least one item, got none"
        );
        assert_eq!(
            a.string("missing").unwrap_err().0,
            "missing required argument \"missing\""
        );
        assert_eq!(a.int("absent", 10, 1, 1000).unwrap(), 10);
        let e = Args::new(&m, &["query"]).err().unwrap();
        assert!(e.0.starts_with("unknown argument"), "{e}");
    }

    #[test]
    fn whole_floats_count_as_integers() {
        let m = map(json!({"limit": 20.0, "bad": 2.5}));
        let a = Args::new(&m, &["limit", "bad"]).unwrap();
        assert_eq!(a.int("limit", 10, 1, 1000).unwrap(), 20);
        assert!(a.int("bad", 10, 1, 1000).is_err());
    }
}
