//! `GET /ubdcc_book_copy?exchange=…&market=…` on a DCN: a copy of one synced book for a peer DCN
//! that starts its replica from it instead of a REST snapshot (issue 12; the engine's
//! `peer_seed` module is the other side).
//!
//! The body is Binance's snapshot format — `{"lastUpdateId":u,"bids":[["p","q"],…],"asks":…}` —
//! with `u` the book's last applied update id, so the peer parses and aligns it exactly like an
//! exchange snapshot; the `x-ubdcc-depth` header says how many levels per side it is complete
//! to. Both sides come from one consistent read of this DCN's own segment, as exact decimals.
//!
//! Internal (cluster secret, see [`crate::auth::INTERNAL`]): a book is market data, but the
//! endpoint is meant for peers only, and a copy of 1 000 levels is the largest answer a DCN
//! gives. Answers: 200 with the copy, 404 when this DCN holds no such book, 409 when it holds
//! it but not synced (the peer may wait for it), 503 when the segment cannot be read.

use std::fmt::Write as _;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use ubdcc_engine::DEPTH_HEADER;
use ubdcc_shm::{BookCopy, Decimal, RawLevel, ReadError};

use crate::dcn_api::DcnApiState;
use crate::envelope::{ErrorId, bytes_response};
use crate::params::Params;

/// The event name of the endpoint's error envelopes.
const EVENT: &str = "UBDCC_BOOK_COPY";

/// Serves one copy; see the module doc.
pub(crate) async fn book_copy(
    State(state): State<DcnApiState>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match Params::from_parts(EVENT, query.as_deref(), b"") {
        Ok(params) => params,
        Err(error) => return error.into_response(),
    };
    let [exchange, market] =
        match params.required(ErrorId::MISSING_BOOK_PARAMETER, ["exchange", "market"]) {
            Ok(values) => values,
            Err(error) => return error.into_response(),
        };
    let copy = state.with_reader(|reader| reader.copy_book(exchange, market, None));
    match copy {
        Ok(copy) => answer(&copy),
        Err(error) => refusal(&error),
    }
}

fn answer(copy: &BookCopy) -> Response {
    // Only what the book covers: a shallow book's last levels may lie beyond the prices its
    // snapshot covered, and a copy is complete to its depth, never more.
    let depth = copy.info.depth as usize;
    let (bids, asks) = (
        &copy.bids[..copy.bids.len().min(depth)],
        &copy.asks[..copy.asks.len().min(depth)],
    );
    let mut body = String::with_capacity(64 + 48 * (bids.len() + asks.len()));
    write!(
        body,
        "{{\"lastUpdateId\":{},\"bids\":",
        copy.info.last_update_id
    )
    .ok();
    levels(&mut body, bids, copy.price_exponent, copy.quantity_exponent);
    body.push_str(",\"asks\":");
    levels(&mut body, asks, copy.price_exponent, copy.quantity_exponent);
    body.push('}');
    let mut response = bytes_response(StatusCode::OK, body.into_bytes());
    response
        .headers_mut()
        .insert(DEPTH_HEADER, HeaderValue::from(copy.info.depth));
    response
}

/// `[["price","quantity"],…]` as exact decimal strings.
fn levels(out: &mut String, levels: &[RawLevel], price: i8, quantity: i8) {
    out.push('[');
    for (index, level) in levels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let (p, q) = (
            Decimal::new(level.price, price),
            Decimal::new(level.quantity, quantity),
        );
        write!(out, "[\"{p}\",\"{q}\"]").ok();
    }
    out.push(']');
}

fn refusal(error: &ReadError) -> Response {
    let status = match error {
        ReadError::NotFound { .. } => StatusCode::NOT_FOUND,
        ReadError::NotSynced { .. } => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = serde_json::json!({"result": "ERROR", "event": EVENT, "message": error.to_string()});
    bytes_response(status, body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_written_as_exact_decimal_strings() {
        let mut out = String::new();
        let raw = [
            RawLevel {
                price: 10_050,
                quantity: 1_500,
            },
            RawLevel {
                price: 10_000,
                quantity: 1,
            },
        ];
        levels(&mut out, &raw, -2, -3);
        assert_eq!(out, r#"[["100.50","1.500"],["100.00","0.001"]]"#);
    }
}
