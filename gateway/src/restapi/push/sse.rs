//! `GET /sse?streams=a,b`: the same streams and messages as `/ws`, as Server-Sent Events. Each
//! message is one event whose data is the JSON `/ws` sends (`data: {"stream":…,"data":…}`); the
//! streams are fixed for the connection. Bad or refused streams get an error envelope (#1117)
//! before any event; a client that reads nothing for [`super::limits::CUT_AFTER`] gets a last
//! `event: cut` with the reason when it reads again, and the stream ends.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use bytes::{BufMut as _, Bytes, BytesMut};

use super::limits::MAX_CLIENTS;
use super::outbox::{CutReason, Outgoing};
use super::session::Session;
use super::ws::refuse;
use crate::lifecycle::ShutdownSignal;
use crate::restapi::RestApi;

/// The route of `/sse`.
pub(crate) fn sse_route() -> MethodRouter<Arc<RestApi>> {
    get(sse)
}

async fn sse(State(api): State<Arc<RestApi>>, request: Parts) -> Response {
    let Some(push) = &api.push else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, super::NO_LOCAL_READS);
    };
    let names = streams_param(request.uri.query());
    if names.is_empty() {
        return refuse(
            StatusCode::OK,
            "`streams` is missing: /sse?streams=<exchange>:<MARKET>@bbo,…",
        );
    }
    if !push.admit() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the push server has its most clients ({MAX_CLIENTS}); try later"),
        );
    }
    let shutdown = push.shutdown();
    let mut session = Session::new(Arc::clone(&api));
    if let Err(error) = session.subscribe(&names) {
        return refuse(StatusCode::OK, &error.msg);
    }
    let events = futures_util::stream::unfold(
        Some(Events {
            session,
            shutdown,
            batch: Vec::new(),
        }),
        next_chunk,
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(events))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// `streams=a,b` (repeated `streams` keys add up).
fn streams_param(query: Option<&str>) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(key, _)| key == "streams")
        .flat_map(|(_, value)| {
            value
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An SSE client's state between chunks.
struct Events {
    session: Session,
    shutdown: ShutdownSignal,
    batch: Vec<Outgoing>,
}

/// The next chunk of events: everything pending, or the last event; `None` ends the stream.
async fn next_chunk(events: Option<Events>) -> Option<(Result<Bytes, Infallible>, Option<Events>)> {
    let mut events = events?;
    loop {
        let outbox = Arc::clone(events.session.outbox());
        tokio::select! {
            () = events.shutdown.wait() => return Some((Ok(last_event(&CutReason::Shutdown)), None)),
            () = outbox.ready() => {}
        }
        events.batch.clear();
        if let Err(reason) = outbox.take(&mut events.batch) {
            events.session.count_cut();
            return Some((Ok(last_event(&reason)), None));
        }
        if events.batch.is_empty() {
            continue;
        }
        let size: usize = events.batch.iter().map(|m| m.payload.len() + 8).sum();
        let mut chunk = BytesMut::with_capacity(size);
        for message in &events.batch {
            chunk.put_slice(b"data: ");
            chunk.put_slice(message.payload.as_bytes());
            chunk.put_slice(b"\n\n");
        }
        events.session.sent(&events.batch);
        return Some((Ok(chunk.freeze()), Some(events)));
    }
}

/// `event: cut` with the reason, the stream's last event.
fn last_event(reason: &CutReason) -> Bytes {
    Bytes::from(format!(
        "event: cut\ndata: {{\"status\":\"cut\",\"reason\":\"{}\"}}\n\n",
        reason.as_str()
    ))
}
