//! The WebSocket request protocol, as Binance's market streams speak it:
//!
//! ```text
//! → {"method":"SUBSCRIBE","params":["binance.com:BTCUSDT@book20"],"id":1}
//! ← {"result":null,"id":1}
//! → {"method":"LIST_SUBSCRIPTIONS","id":3}
//! ← {"result":["binance.com:BTCUSDT@book20"],"id":3}
//! → {"method":"SUBSCRIBE","params":["nope"],"id":4}
//! ← {"error":{"code":2,"msg":"Invalid request: invalid stream name 'nope': …"},"id":4}
//! ```
//!
//! Error codes are Binance's: 0 unknown property, 1 invalid value type, 2 invalid request,
//! 3 invalid JSON. `id` is an unsigned integer, a string of at most 36 characters, or null
//! (then the reply's `id` is null), as Binance allows. Beyond Binance, which accepts any name
//! silently, a SUBSCRIBE with a bad name, a book not on this host or over a limit is refused
//! whole, with the reason.

use serde_json::{Value, json};

use super::limits::MAX_STREAMS_PER_CLIENT;

/// The longest string `id` Binance accepts.
const MAX_ID_LEN: usize = 36;

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Method {
    /// Subscribe to these stream names.
    Subscribe(Vec<String>),
    /// Unsubscribe from these stream names.
    Unsubscribe(Vec<String>),
    /// List the stream names held.
    ListSubscriptions,
}

/// A request's error, answered as `{"error":{"code":…,"msg":…},"id":…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestError {
    /// Binance's code.
    pub(crate) code: u8,
    /// What is wrong.
    pub(crate) msg: String,
}

impl RequestError {
    /// Code 2, "Invalid request: …".
    pub(crate) fn invalid(what: impl std::fmt::Display) -> Self {
        Self {
            code: 2,
            msg: format!("Invalid request: {what}"),
        }
    }
}

/// Parses one text frame: the request's `id` (`Value::Null` when absent or unusable) and its
/// method or error.
pub(crate) fn parse(text: &str) -> (Value, Result<Method, RequestError>) {
    let request: Value = match serde_json::from_str(text) {
        Ok(request) => request,
        Err(error) => {
            let error = RequestError {
                code: 3,
                msg: format!("Invalid JSON: {error}"),
            };
            return (Value::Null, Err(error));
        }
    };
    let Value::Object(mut request) = request else {
        return (
            Value::Null,
            Err(RequestError::invalid("expected a JSON object")),
        );
    };
    let id = request.remove("id").unwrap_or(Value::Null);
    let id = match check_id(id) {
        Ok(id) => id,
        Err(error) => return (Value::Null, Err(error)),
    };
    if let Some(unknown) = request
        .keys()
        .find(|key| !["method", "params"].contains(&key.as_str()))
    {
        let error = RequestError {
            code: 0,
            msg: format!("Unknown property {}", crate::envelope::clip(unknown)),
        };
        return (id, Err(error));
    }
    (id, method(&request))
}

fn check_id(id: Value) -> Result<Value, RequestError> {
    match &id {
        Value::Null => Ok(id),
        Value::Number(n) if n.is_u64() => Ok(id),
        Value::String(s) if s.chars().count() <= MAX_ID_LEN => Ok(id),
        _ => Err(RequestError::invalid(format!(
            "request ID must be an unsigned integer or a string of at most {MAX_ID_LEN} characters"
        ))),
    }
}

fn method(request: &serde_json::Map<String, Value>) -> Result<Method, RequestError> {
    let Some(method) = request.get("method") else {
        return Err(RequestError::invalid("missing field `method`"));
    };
    let Some(method) = method.as_str() else {
        return Err(RequestError {
            code: 1,
            msg: "Invalid value type: expected a string for `method`".to_owned(),
        });
    };
    match method {
        "SUBSCRIBE" => Ok(Method::Subscribe(names(request.get("params"))?)),
        "UNSUBSCRIBE" => Ok(Method::Unsubscribe(names(request.get("params"))?)),
        "LIST_SUBSCRIPTIONS" => Ok(Method::ListSubscriptions),
        other => Err(RequestError::invalid(format!(
            "unknown variant {}, expected one of SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS",
            crate::envelope::clip(other)
        ))),
    }
}

fn names(params: Option<&Value>) -> Result<Vec<String>, RequestError> {
    let Some(Value::Array(params)) = params else {
        return Err(RequestError {
            code: 1,
            msg: "Invalid value type: expected `params` to be an array of stream names".to_owned(),
        });
    };
    if params.len() > MAX_STREAMS_PER_CLIENT {
        return Err(RequestError::invalid(format!(
            "too many parameters: at most {MAX_STREAMS_PER_CLIENT} streams per connection"
        )));
    }
    params
        .iter()
        .map(|name| {
            name.as_str()
                .map(str::to_owned)
                .ok_or_else(|| RequestError {
                    code: 1,
                    msg: "Invalid value type: expected a string for each stream name".to_owned(),
                })
        })
        .collect()
}

/// `{"result":<result>,"id":<id>}`.
pub(crate) fn reply(id: &Value, result: Value) -> String {
    json!({"result": result, "id": id}).to_string()
}

/// `{"error":{"code":…,"msg":…},"id":<id>}`.
pub(crate) fn error_reply(id: &Value, error: &RequestError) -> String {
    json!({"error": {"code": error.code, "msg": error.msg}, "id": id}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binance_s_requests_parse() {
        let (id, method) =
            parse(r#"{"method":"SUBSCRIBE","params":["binance.com:BTCUSDT@book20"],"id":1}"#);
        assert_eq!(id, json!(1));
        assert_eq!(
            method,
            Ok(Method::Subscribe(vec!["binance.com:BTCUSDT@book20".into()]))
        );
        let (id, method) = parse(r#"{"method":"LIST_SUBSCRIPTIONS","id":"a-b"}"#);
        assert_eq!((id, method), (json!("a-b"), Ok(Method::ListSubscriptions)));
        let (id, method) = parse(r#"{"method":"UNSUBSCRIBE","params":[]}"#);
        assert_eq!((id, method), (Value::Null, Ok(Method::Unsubscribe(vec![]))));
    }

    #[test]
    fn bad_requests_get_binance_s_codes() {
        let code = |text: &str| parse(text).1.unwrap_err().code;
        assert_eq!(code("{"), 3);
        assert_eq!(code("[1]"), 2);
        assert_eq!(code(r#"{"id":1}"#), 2);
        assert_eq!(code(r#"{"method":"PING","id":1}"#), 2);
        assert_eq!(code(r#"{"method":5,"id":1}"#), 1);
        assert_eq!(code(r#"{"method":"SUBSCRIBE","id":1}"#), 1);
        assert_eq!(code(r#"{"method":"SUBSCRIBE","params":[1],"id":1}"#), 1);
        assert_eq!(code(r#"{"method":"SUBSCRIBE","params":[],"id":-1}"#), 2);
        assert_eq!(
            code(r#"{"method":"SUBSCRIBE","params":[],"id":1,"x":2}"#),
            0
        );
        let many: Vec<String> = (0..1025).map(|i| format!("\"s{i}\"")).collect();
        let text = format!(
            r#"{{"method":"SUBSCRIBE","params":[{}],"id":1}}"#,
            many.join(",")
        );
        assert_eq!(code(&text), 2);
        let (id, error) = parse(r#"{"method":"PING","id":7}"#);
        let answer: Value = serde_json::from_str(&error_reply(&id, &error.unwrap_err())).unwrap();
        assert_eq!(answer["id"], 7);
        assert_eq!(answer["error"]["code"], 2);
        assert!(answer["error"]["msg"].as_str().unwrap().contains("PING"));
    }
}
