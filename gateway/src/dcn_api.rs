//! The DCN's read endpoints: `/get_asks` and `/get_bids`, with the original DCN's envelope and
//! error ids, answered from the DCN's own shared-memory segment like any other reader.
//!
//! Beyond the original, reads also return `last_update_id`, `event_time` (exchange time, ms) and
//! `age_ms`, accept `max_age_ms` (a too-old book is an error, not data), and invalid numbers are
//! error envelopes (#1100–#1102), never HTTP 500. `/test`, `/ubdcc_mgmt_backup` and `/shutdown`
//! come from [`crate::agent::base_router`].

use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use axum::{Router, middleware};
use ubdcc_shm::{ClusterReader, Side};

use crate::agent::{PodBase, base_router};
use crate::auth::{Auth, guard};
use crate::book_answer::{self, event_and_key};
use crate::envelope::{bytes_response, method_not_allowed, not_found};
use crate::params::{BookRequest, Params};

/// What the DCN endpoints read from.
#[derive(Clone)]
pub struct DcnApiState {
    reader: Arc<Mutex<ClusterReader>>,
}

impl DcnApiState {
    /// Reads the books of `reader` (the DCN's own segment).
    pub fn new(reader: ClusterReader) -> Self {
        Self {
            reader: Arc::new(Mutex::new(reader)),
        }
    }
}

/// The DCN's whole router: the reads, the endpoints every pod shares (`base`), the original's
/// 404 / 405 answers, behind `auth`.
pub fn router(state: DcnApiState, base: PodBase, auth: Auth) -> Router {
    Router::new()
        .route("/get_asks", get(get_asks))
        .route("/get_bids", get(get_bids))
        .with_state(state)
        .merge(base_router(base))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(auth, guard))
}

async fn get_asks(State(state): State<DcnApiState>, RawQuery(query): RawQuery) -> Response {
    read_side(&state, query.as_deref(), Side::Asks)
}

async fn get_bids(State(state): State<DcnApiState>, RawQuery(query): RawQuery) -> Response {
    read_side(&state, query.as_deref(), Side::Bids)
}

/// The one body of `get_asks` and `get_bids`.
fn read_side(state: &DcnApiState, query: Option<&str>, side: Side) -> Response {
    let (event, _) = event_and_key(side);
    let request = match Params::from_parts(event, query, b"").and_then(|p| BookRequest::parse(&p)) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let mut levels = Vec::new();
    let result = {
        // The lock is held for one read (tens of ns) and never across an await.
        let mut reader = state
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        book_answer::read(&mut reader, &request, side, &mut levels)
    };
    match result {
        Ok(info) => bytes_response(
            StatusCode::OK,
            book_answer::body(side, &info, &levels, None),
        ),
        Err(error) => error.into_response(),
    }
}
