//! JSON-RPC 2.0 messages as MCP carries them: parsing what comes, building answers.

use serde_json::{json, Map, Value};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error.
pub const INTERNAL_ERROR: i64 = -32603;

/// One message a client sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request, to be answered under its id.
    Request {
        /// the request id (a string or a number)
        id: Value,
        /// the method
        method: String,
        /// the params object, empty when absent
        params: Map<String, Value>,
    },
    /// A notification: no answer.
    Notification {
        /// the method
        method: String,
    },
    /// A response to a request of ours (we send none, so it is only acknowledged).
    Response,
}

/// An error answer to one message: its id (null when unknown), code and message.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// id of the request it answers
    pub id: Value,
    /// the JSON-RPC error code
    pub code: i64,
    /// what was wrong
    pub message: String,
}

impl RpcError {
    /// An error with a code and message for a request id.
    pub fn new(id: Value, code: i64, message: impl Into<String>) -> Self {
        RpcError {
            id,
            code,
            message: message.into(),
        }
    }

    /// The error as a JSON-RPC response object.
    pub fn to_json(&self) -> Value {
        error_response(&self.id, self.code, &self.message)
    }
}

/// A JSON-RPC success response.
pub fn result_response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A JSON-RPC error response.
pub fn error_response(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Reads one message; an invalid one gives the error to answer it with.
pub fn parse_message(value: Value) -> Result<Incoming, RpcError> {
    let Value::Object(mut m) = value else {
        return Err(RpcError::new(
            Value::Null,
            INVALID_REQUEST,
            format!(
                "expected a JSON-RPC message object, got {}",
                crate::ingest::batch::json_kind(&value)
            ),
        ));
    };
    let id = m.remove("id");
    let id_for_errors = id.clone().unwrap_or(Value::Null);
    let invalid = |message: String| RpcError::new(id_for_errors.clone(), INVALID_REQUEST, message);
    match m.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        Some(other) => return Err(invalid(format!("jsonrpc must be \"2.0\", got {other}"))),
        None => return Err(invalid("jsonrpc must be \"2.0\", got nothing".to_string())),
    }
    if let Some(id) = &id {
        if !(id.is_string() || id.is_i64() || id.is_u64()) {
            return Err(RpcError::new(
                Value::Null,
                INVALID_REQUEST,
                format!("id must be a string or an integer, got {id}"),
            ));
        }
    }
    let method = match m.remove("method") {
        Some(Value::String(method)) => method,
        Some(other) => return Err(invalid(format!("method must be a string, got {other}"))),
        None if id.is_some() && (m.contains_key("result") || m.contains_key("error")) => {
            return Ok(Incoming::Response)
        }
        None => return Err(invalid("method is required".to_string())),
    };
    let params = match m.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(other) => {
            return Err(RpcError::new(
                id_for_errors,
                INVALID_PARAMS,
                format!(
                    "params must be an object, got {}",
                    crate::ingest::batch::json_kind(&other)
                ),
            ))
        }
    };
    Ok(match id {
        Some(id) => Incoming::Request { id, method, params },
        None => Incoming::Notification { method },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_notifications_and_responses() {
        let r = parse_message(json!({"jsonrpc": "2.0", "id": "a1", "method": "ping"})).unwrap();
        assert_eq!(
            r,
            Incoming::Request {
                id: json!("a1"),
                method: "ping".into(),
                params: Map::new()
            }
        );
        let n = parse_message(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .unwrap();
        assert_eq!(
            n,
            Incoming::Notification {
                method: "notifications/initialized".into()
            }
        );
        let resp = parse_message(json!({"jsonrpc": "2.0", "id": 3, "result": {}})).unwrap();
        assert_eq!(resp, Incoming::Response);
    }

    #[test]
    fn invalid_messages_say_why() {
        let e = parse_message(json!({"id": 1, "method": "ping"})).unwrap_err();
        assert_eq!((e.code, e.id.clone()), (INVALID_REQUEST, json!(1)));
        assert!(
            e.message.contains("jsonrpc must be \"2.0\""),
            "{}",
            e.message
        );
        let e = parse_message(json!({"jsonrpc": "2.0", "id": 1.5, "method": "ping"})).unwrap_err();
        assert!(e.message.contains("id must be a string or an integer"));
        let e = parse_message(json!({"jsonrpc": "2.0", "id": 1, "method": "x", "params": [1]}))
            .unwrap_err();
        assert_eq!(e.code, INVALID_PARAMS);
        let e = parse_message(json!([1])).unwrap_err();
        assert!(e.message.contains("got an array"));
    }
}
