//! The DCN's read endpoints: `/get_asks` and `/get_bids`, with the original DCN's envelope and
//! error ids, answered from the DCN's own shared-memory segment like any other reader.
//!
//! Beyond the original, reads also return `last_update_id`, `event_time` (exchange time, ms) and
//! `age_ms`, accept `max_age_ms` (a too-old book is an error, not data), and invalid numbers are
//! error envelopes (#1100–#1102), never HTTP 500. `/test`, `/ubdcc_mgmt_backup` and `/shutdown`
//! come from [`crate::agent::base_router`].

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use ubdcc_engine::{SeedStats, SnapshotKind, SnapshotStats, WaitingBook};
use ubdcc_shm::{BookStatus, ClusterReader, Side};

use crate::agent::{PodBase, pod_router};
use crate::auth::Auth;
use crate::book_answer::{self, event_and_key};
use crate::book_query::{self, QueryKind, QueryRequest};
use crate::envelope::ErrorId;
use crate::envelope::bytes_response;
use crate::metrics::{Metrics, escape, family};
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

    /// Runs `read` with the reader; the lock is held for that one read, never across an await.
    pub(crate) fn with_reader<T>(&self, read: impl FnOnce(&mut ClusterReader) -> T) -> T {
        let mut reader = self
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        read(&mut reader)
    }
}

/// The DCN's whole router: the reads, the endpoints every pod shares (`base`), the original's
/// 404 / 405 answers, behind `auth`.
pub fn router(state: DcnApiState, base: PodBase, auth: Auth, metrics: Metrics) -> Router {
    let reads = Router::new()
        .route("/get_asks", get(get_asks))
        .route("/get_bids", get(get_bids))
        .route("/get_book", get(get_book))
        .route("/get_fill_price", get(get_fill_price))
        .route("/get_depth_stats", get(get_depth_stats))
        .route("/get_bbo", get(get_bbo))
        .route("/ubdcc_book_copy", get(crate::book_copy::book_copy))
        .with_state(state);
    pod_router(reads, base, auth, metrics)
}

/// A DCN's metrics: HTTP, every book of its segment (status, resyncs, gaps, messages applied,
/// age), the segment's heartbeat, the snapshot scheduler's downloads, weight and 429 / 418, and
/// its queue (books waiting per kind, each waiting book's place and expected start).
pub fn metrics(
    reader: ClusterReader,
    snapshots: Option<Arc<SnapshotStats>>,
    seeds: Option<Arc<SeedStats>>,
) -> Metrics {
    let reader = Mutex::new(reader);
    let known = vec![
        "/get_asks",
        "/get_bids",
        "/get_book",
        "/get_fill_price",
        "/get_depth_stats",
        "/get_bbo",
        "/ubdcc_book_copy",
        "/test",
        "/metrics",
        "/ubdcc_mgmt_backup",
        "/shutdown",
    ];
    Metrics::new("dcn", known).with_source(Arc::new(move |out: &mut String| {
        let mut reader = reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        book_metrics(&mut reader, out);
        if let Some(stats) = &snapshots {
            snapshot_metrics(stats, out);
        }
        if let Some(stats) = &seeds {
            seed_metrics(stats, out);
        }
    }))
}

fn book_metrics(reader: &mut ClusterReader, out: &mut String) {
    let listings = reader.list();
    let (mut status, mut resyncs, mut gaps, mut updates, mut ages) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut audits, mut mismatches, mut verified) = (Vec::new(), Vec::new(), Vec::new());
    for listing in &listings {
        let labels = format!(
            "exchange=\"{}\",market=\"{}\"",
            escape(&listing.exchange),
            escape(&listing.market)
        );
        let state = match &listing.status {
            Ok(BookStatus::Synced) => "synced",
            Ok(BookStatus::Starting) => "starting",
            Ok(BookStatus::OutOfSync(_)) | Err(_) => "out_of_sync",
        };
        status.push((format!("{labels},status=\"{state}\""), 1.0));
        if let Ok(proof) = reader.proof(&listing.exchange, &listing.market) {
            let info = proof.info;
            resyncs.push((labels.clone(), f64::from(info.resyncs)));
            gaps.push((labels.clone(), f64::from(info.gaps)));
            updates.push((labels.clone(), info.updates as f64));
            audits.push((labels.clone(), f64::from(proof.audit.audits)));
            mismatches.push((labels.clone(), f64::from(proof.audit.audit_mismatches)));
            if proof.audit.verified_at_ms > 0 {
                let verified_ns = proof.audit.verified_at_ms.saturating_mul(1_000_000);
                verified.push((labels.clone(), book_answer::age_ms_of(verified_ns) / 1e3));
            }
            ages.push((labels, book_answer::age_ms(&info) / 1e3));
        }
    }
    family(
        out,
        "ubdcc_book_status",
        "gauge",
        "1 for each book, labelled with its status.",
        &status,
    );
    family(
        out,
        "ubdcc_book_resyncs_total",
        "counter",
        "Resyncs of each book since it was added.",
        &resyncs,
    );
    family(
        out,
        "ubdcc_book_gaps_total",
        "counter",
        "Gaps detected in each book's stream.",
        &gaps,
    );
    family(
        out,
        "ubdcc_book_updates_total",
        "counter",
        "Messages applied (and published) to each book.",
        &updates,
    );
    family(
        out,
        "ubdcc_book_age_seconds",
        "gauge",
        "Seconds since the exchange's time of each book (its last event's, or its snapshot's).",
        &ages,
    );
    family(
        out,
        "ubdcc_book_audits_total",
        "counter",
        "Audits of each book against a REST snapshot at the same update id.",
        &audits,
    );
    family(
        out,
        "ubdcc_book_audit_mismatches_total",
        "counter",
        "Audits that found each book wrong (it was replaced by the exchange's without a resync).",
        &mismatches,
    );
    family(
        out,
        "ubdcc_book_verified_age_seconds",
        "gauge",
        "Seconds since an audit last proved each book (absent: never audited).",
        &verified,
    );
    let heartbeat: Vec<(String, f64)> = reader
        .segments()
        .iter()
        .map(|segment| {
            (
                format!("segment=\"{}\"", escape(segment.name())),
                segment.heartbeat_age().as_secs_f64(),
            )
        })
        .collect();
    family(
        out,
        "ubdcc_segment_heartbeat_age_seconds",
        "gauge",
        "Seconds since the segment's writer last beat.",
        &heartbeat,
    );
}

fn seed_metrics(stats: &SeedStats, out: &mut String) {
    let count = |counter: &std::sync::atomic::AtomicU64| {
        counter.load(std::sync::atomic::Ordering::Relaxed) as f64
    };
    family(
        out,
        "ubdcc_book_seeds_total",
        "counter",
        "Books started from a synced peer's copy instead of a REST snapshot, by source.",
        &[
            ("source=\"shm\"".to_owned(), count(&stats.shm)),
            ("source=\"http\"".to_owned(), count(&stats.http)),
        ],
    );
    family(
        out,
        "ubdcc_book_seed_failures_total",
        "counter",
        "Copies from peers that failed midway (the next source or the exchange was used).",
        &[(String::new(), count(&stats.failures))],
    );
}

fn snapshot_metrics(stats: &SnapshotStats, out: &mut String) {
    let read = |counter: &std::sync::atomic::AtomicU64| {
        counter.load(std::sync::atomic::Ordering::Relaxed) as f64
    };
    family(
        out,
        "ubdcc_snapshot_downloads_total",
        "counter",
        "REST depth snapshots started.",
        &[(String::new(), read(&stats.downloads))],
    );
    family(
        out,
        "ubdcc_snapshot_failures_total",
        "counter",
        "Snapshot downloads that brought no usable snapshot.",
        &[(String::new(), read(&stats.failures))],
    );
    family(
        out,
        "ubdcc_snapshot_weight_total",
        "counter",
        "REST request weight spent on snapshots.",
        &[(String::new(), read(&stats.weight))],
    );
    let rejections = [
        ("429".to_owned(), read(&stats.responses_429)),
        ("418".to_owned(), read(&stats.responses_418)),
    ]
    .map(|(code, value)| (format!("code=\"{code}\""), value));
    family(
        out,
        "ubdcc_snapshot_rejections_total",
        "counter",
        "429 (rate limited) and 418 (banned) answers.",
        &rejections,
    );
    waiting_metrics(&stats.waiting.books(), out);
}

/// The snapshot queue: books waiting per kind, the longest wait, and each waiting book's place
/// and expected start.
fn waiting_metrics(waiting: &[WaitingBook], out: &mut String) {
    let now = SystemTime::now();
    let seconds =
        |from: SystemTime, to: SystemTime| to.duration_since(from).map_or(0.0, |d| d.as_secs_f64());
    let (mut count, mut oldest) = (Vec::new(), Vec::new());
    for kind in SnapshotKind::ALL {
        let label = format!("kind=\"{}\"", kind.as_str());
        let of_kind = waiting.iter().filter(|book| book.kind == kind);
        let longest = of_kind
            .clone()
            .map(|book| seconds(book.since, now))
            .fold(0.0, f64::max);
        count.push((label.clone(), of_kind.count() as f64));
        oldest.push((label, longest));
    }
    family(
        out,
        "ubdcc_snapshot_waiting",
        "gauge",
        "Books waiting for a REST snapshot, by queue (resync, new, verify; served in that order).",
        &count,
    );
    family(
        out,
        "ubdcc_snapshot_longest_wait_seconds",
        "gauge",
        "How long the longest-waiting book of each queue has waited.",
        &oldest,
    );
    let (mut places, mut etas) = (Vec::new(), Vec::new());
    for book in waiting {
        let labels = format!(
            "exchange=\"{}\",market=\"{}\",kind=\"{}\"",
            escape(book.exchange.as_str()),
            escape(&book.symbol),
            book.kind.as_str()
        );
        places.push((labels.clone(), f64::from(book.place)));
        etas.push((labels, seconds(now, book.eta)));
    }
    family(
        out,
        "ubdcc_book_snapshot_place",
        "gauge",
        "A waiting book's place in its REST endpoint's snapshot queue (1: next).",
        &places,
    );
    family(
        out,
        "ubdcc_book_snapshot_eta_seconds",
        "gauge",
        "Seconds until a waiting book's snapshot is expected to start.",
        &etas,
    );
}

async fn get_asks(State(state): State<DcnApiState>, RawQuery(query): RawQuery) -> Response {
    read_side(&state, query.as_deref(), Side::Asks)
}

async fn get_bids(State(state): State<DcnApiState>, RawQuery(query): RawQuery) -> Response {
    read_side(&state, query.as_deref(), Side::Bids)
}

async fn get_book(State(state): State<DcnApiState>, RawQuery(query): RawQuery) -> Response {
    read_query(&state, query.as_deref(), QueryKind::Book)
}

async fn get_fill_price(State(state): State<DcnApiState>, RawQuery(query): RawQuery) -> Response {
    read_query(&state, query.as_deref(), QueryKind::FillPrice)
}

async fn get_depth_stats(State(state): State<DcnApiState>, RawQuery(query): RawQuery) -> Response {
    read_query(&state, query.as_deref(), QueryKind::DepthStats)
}

/// The one body of the reads of [`QueryKind`].
fn read_query(state: &DcnApiState, query: Option<&str>, kind: QueryKind) -> Response {
    let request = match Params::from_parts(kind.event(), query, b"")
        .and_then(|params| QueryRequest::parse(&params, kind))
    {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    match state.with_reader(|reader| book_query::answer(reader, &request)) {
        Ok(body) => bytes_response(StatusCode::OK, body),
        Err(error) => error.into_response(),
    }
}

/// `get_bbo?exchange=..[&markets=A,B]` from this DCN's own books.
async fn get_bbo(State(state): State<DcnApiState>, RawQuery(query): RawQuery) -> Response {
    let params = match Params::from_parts(book_query::BBO_EVENT, query.as_deref(), b"") {
        Ok(params) => params,
        Err(error) => return error.into_response(),
    };
    let request = params
        .required(ErrorId::MISSING_BOOK_PARAMETER, ["exchange"])
        .and_then(|[exchange]| Ok((exchange.to_owned(), params.list("markets")?)));
    let (exchange, markets) = match request {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let entries =
        state.with_reader(|reader| book_query::bbo_entries(reader, &exchange, markets.as_deref()));
    bytes_response(StatusCode::OK, book_query::bbo_body(entries))
}

/// The one body of `get_asks` and `get_bids`.
fn read_side(state: &DcnApiState, query: Option<&str>, side: Side) -> Response {
    let (event, _) = event_and_key(side);
    let request = match Params::from_parts(event, query, b"").and_then(|p| BookRequest::parse(&p)) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let mut levels = Vec::new();
    let result = state.with_reader(|reader| book_answer::read(reader, &request, side, &mut levels));
    match result {
        Ok((info, capacity)) => bytes_response(
            StatusCode::OK,
            book_answer::body(
                side,
                &info,
                &levels,
                None,
                book_answer::partial_answer(&info, capacity, &request),
            ),
        ),
        Err(error) => error.into_response(),
    }
}
