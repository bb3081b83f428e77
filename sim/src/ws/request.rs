//! Client control messages on a stream connection and the replies to them, as Binance writes
//! them: `{"result":null,"id":1}`, `{"result":[...],"id":3}` and
//! `{"error":{"code":2,"msg":"Invalid request: ..."},"id":1}`.
//!
//! Binance's error texts are serde_json's messages (`unknown variant ..., expected one of ...
//! at line 1 column 28`), so the simulator parses requests with serde too and reuses them:
//! code 3 for invalid JSON, code 2 for a request of the wrong shape, code 1 for a non-boolean
//! property value, code 0 for an unknown property.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::family::Venue;
use crate::wire::to_json;

/// The longest string id spot accepts.
const MAX_STRING_ID_LEN: usize = 36;

/// A valid client request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    /// `SUBSCRIBE` these stream names.
    Subscribe(Vec<String>),
    /// `UNSUBSCRIBE` these stream names.
    Unsubscribe(Vec<String>),
    /// `LIST_SUBSCRIPTIONS`.
    ListSubscriptions,
    /// `SET_PROPERTY ["combined", value]`.
    SetCombined(bool),
    /// `GET_PROPERTY ["combined"]`.
    GetCombined,
}

/// A request with the id to echo.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IdentifiedRequest {
    /// What was asked.
    pub(crate) request: Request,
    /// The request's `id`, echoed in the reply.
    pub(crate) id: Value,
}

/// A request refused with one of Binance's error codes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RequestError {
    /// 0 unknown property, 1 invalid value type, 2 invalid request, 3 invalid JSON.
    pub(crate) code: u8,
    /// Binance's message.
    pub(crate) msg: String,
    /// The request's id if it could be read, else `null`.
    pub(crate) id: Value,
}

impl RequestError {
    fn new(code: u8, msg: impl Into<String>, id: &Value) -> Self {
        RequestError {
            code,
            msg: msg.into(),
            id: id.clone(),
        }
    }

    /// An "Invalid request: ..." error (code 2).
    pub(crate) fn invalid(detail: &str, id: &Value) -> Self {
        Self::new(2, format!("Invalid request: {detail}"), id)
    }

    /// The error reply's JSON.
    pub(crate) fn to_reply(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            code: u8,
            msg: &'a str,
        }
        #[derive(Serialize)]
        struct Reply<'a> {
            error: Body<'a>,
            id: &'a Value,
        }
        to_json(&Reply {
            error: Body {
                code: self.code,
                msg: &self.msg,
            },
            id: &self.id,
        })
    }
}

/// A success reply: `{"result":<result>,"id":<id>}`.
pub(crate) fn result_reply(result: &Value, id: &Value) -> String {
    #[derive(Serialize)]
    struct Reply<'a> {
        result: &'a Value,
        id: &'a Value,
    }
    to_json(&Reply { result, id })
}

/// The methods, named as on the wire; serde's unknown-variant message is Binance's.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Method {
    Subscribe,
    Unsubscribe,
    ListSubscriptions,
    SetProperty,
    GetProperty,
}

/// `id` as sent: absent is different from `null`, which spot accepts.
#[derive(Debug, Default)]
struct RawId(Option<Value>);

impl<'de> Deserialize<'de> for RawId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|value| RawId(Some(value)))
    }
}

#[derive(Debug, Deserialize)]
struct RawRequest {
    method: Method,
    #[serde(default)]
    params: Option<Vec<Value>>,
    #[serde(default)]
    id: RawId,
}

/// Parses one text frame from a client of `venue`.
///
/// # Errors
/// A [`RequestError`] with Binance's code and message.
pub(crate) fn parse_request(text: &str, venue: Venue) -> Result<IdentifiedRequest, RequestError> {
    let raw: RawRequest = serde_json::from_str(text).map_err(|error| {
        let id = loose_id(text);
        if error.is_data() {
            RequestError::invalid(&error.to_string(), &id)
        } else {
            RequestError::new(3, format!("Invalid JSON: {error}"), &id)
        }
    })?;
    let id = match raw.id.0 {
        Some(id) if is_valid_id(&id, venue) => id,
        other => {
            let echo = other.unwrap_or(Value::Null);
            return Err(RequestError::invalid(
                "request ID must be an unsigned integer",
                &echo,
            ));
        }
    };
    let params = raw.params.unwrap_or_default();
    let request = match raw.method {
        Method::Subscribe => Request::Subscribe(stream_params(params, &id)?),
        Method::Unsubscribe => Request::Unsubscribe(stream_params(params, &id)?),
        Method::ListSubscriptions if params.is_empty() => Request::ListSubscriptions,
        Method::ListSubscriptions => return Err(RequestError::invalid("too many parameters", &id)),
        Method::SetProperty => Request::SetCombined(set_property_params(&params, &id)?),
        Method::GetProperty => {
            property_name(&params, 1, &id)?;
            Request::GetCombined
        }
    };
    Ok(IdentifiedRequest { request, id })
}

/// Spot accepts a 64-bit signed integer, an alphanumeric string of at most 36 characters, or
/// `null`; the derivatives venues (`fstream`, `dstream`) an unsigned integer only.
fn is_valid_id(id: &Value, venue: Venue) -> bool {
    match venue {
        Venue::Spot => match id {
            Value::Null => true,
            Value::Number(number) => number.is_i64(),
            Value::String(text) => {
                text.len() <= MAX_STRING_ID_LEN && text.chars().all(|c| c.is_ascii_alphanumeric())
            }
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => false,
        },
        Venue::FStream | Venue::DStream => id.is_u64(),
    }
}

/// The `id` of a request that failed to parse as a whole, if it is readable at all.
fn loose_id(text: &str) -> Value {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|value| value.get("id").cloned())
        .unwrap_or(Value::Null)
}

fn stream_params(params: Vec<Value>, id: &Value) -> Result<Vec<String>, RequestError> {
    params
        .into_iter()
        .map(|param| match param {
            Value::String(name) => Ok(name),
            _ => Err(RequestError::invalid("invalid stream", id)),
        })
        .collect()
}

/// Checks that `params` holds at most `max` values and starts with the property `combined`.
fn property_name(params: &[Value], max: usize, id: &Value) -> Result<(), RequestError> {
    if params.len() > max {
        return Err(RequestError::invalid("too many parameters", id));
    }
    match params.first() {
        Some(Value::String(name)) if name == "combined" => Ok(()),
        Some(Value::String(_)) => Err(RequestError::new(0, "Unknown property", id)),
        _ => Err(RequestError::invalid("property name must be a string", id)),
    }
}

fn set_property_params(params: &[Value], id: &Value) -> Result<bool, RequestError> {
    property_name(params, 2, id)?;
    match params.get(1) {
        Some(Value::Bool(value)) => Ok(*value),
        _ => Err(RequestError::new(
            1,
            "Invalid value type: expected Boolean",
            id,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<IdentifiedRequest, RequestError> {
        parse_request(text, Venue::Spot)
    }

    #[test]
    fn subscribe_list_and_properties_parse() {
        let subscribe = parse(r#"{"method":"SUBSCRIBE","params":["a@depth"],"id":1}"#);
        assert_eq!(
            subscribe.map(|r| (r.request, r.id)),
            Ok((Request::Subscribe(vec!["a@depth".into()]), json!(1)))
        );
        let list = parse(r#"{"method":"LIST_SUBSCRIPTIONS","id":"abc"}"#);
        assert_eq!(list.map(|r| r.request), Ok(Request::ListSubscriptions));
        let set = parse(r#"{"method":"SET_PROPERTY","params":["combined",true],"id":null}"#);
        assert_eq!(set.map(|r| r.request), Ok(Request::SetCombined(true)));
    }

    #[test]
    fn unknown_methods_get_serdes_message_as_binance_does() {
        let Err(error) = parse(r#"{"method":"SUBSCRIB","params":[],"id":1}"#) else {
            panic!("must fail");
        };
        assert_eq!(error.code, 2);
        assert!(
            error.msg.starts_with(
                "Invalid request: unknown variant `SUBSCRIB`, expected one of `SUBSCRIBE`"
            ),
            "{}",
            error.msg
        );
        assert_eq!(error.id, json!(1));
    }

    #[test]
    fn invalid_json_is_code_3() {
        let Err(error) = parse("{\"method\":") else {
            panic!("must fail");
        };
        assert_eq!(error.code, 3);
        assert!(error.msg.starts_with("Invalid JSON: "), "{}", error.msg);
        assert_eq!(
            error.to_reply(),
            format!(
                r#"{{"error":{{"code":3,"msg":"{}"}},"id":null}}"#,
                error.msg
            )
        );
    }

    #[test]
    fn ids_follow_each_venues_rules() {
        let missing = parse(r#"{"method":"LIST_SUBSCRIPTIONS"}"#).map_err(|e| e.msg);
        assert_eq!(
            missing,
            Err("Invalid request: request ID must be an unsigned integer".into())
        );
        assert!(parse(r#"{"method":"LIST_SUBSCRIPTIONS","id":-5}"#).is_ok());
        let fstream = parse_request(
            r#"{"method":"LIST_SUBSCRIPTIONS","id":"x1"}"#,
            Venue::FStream,
        );
        assert_eq!(fstream.map_err(|e| e.code), Err(2));
        let dstream = parse_request(
            r#"{"method":"LIST_SUBSCRIPTIONS","id":"x1"}"#,
            Venue::DStream,
        );
        assert_eq!(dstream.map_err(|e| e.code), Err(2));
        assert!(parse_request(r#"{"method":"LIST_SUBSCRIPTIONS","id":7}"#, Venue::DStream).is_ok());
        let too_long = format!(
            r#"{{"method":"LIST_SUBSCRIPTIONS","id":"{}"}}"#,
            "a".repeat(37)
        );
        assert!(parse(&too_long).is_err());
    }

    #[test]
    fn property_errors_use_codes_0_and_1() {
        let unknown = parse(r#"{"method":"GET_PROPERTY","params":["colour"],"id":2}"#);
        assert_eq!(unknown.map_err(|e| e.code), Err(0));
        let not_bool = parse(r#"{"method":"SET_PROPERTY","params":["combined","yes"],"id":2}"#);
        assert_eq!(not_bool.map_err(|e| e.code), Err(1));
    }

    #[test]
    fn replies_put_result_before_id() {
        assert_eq!(
            result_reply(&Value::Null, &json!(7)),
            r#"{"result":null,"id":7}"#
        );
    }
}
