//! A simulator per test, an HTTP client, a WebSocket client with deadlines, and a tiny
//! independent reference book that applies Binance's sync rules to the simulator's output.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use ubdcc_sim::{SimConfig, SimConfigBuilder};

/// How long any single network step may take before the test fails: generous, for a loaded
/// 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Awaits `future` or fails the test after [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {DEADLINE:?}: {what}"),
    }
}

/// A builder with the settings most tests want: 2 markets per family, manual stepping.
pub fn config() -> SimConfigBuilder {
    SimConfig::builder().markets(2).rate_hz(0)
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.body))
    }

    /// A header as an integer.
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse().ok())
    }
}

/// A simulator running for one test.
pub struct TestSim {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl TestSim {
    /// Binds port 0 and serves `config`; ready as soon as this returns (the listener is bound).
    pub async fn start(config: SimConfigBuilder) -> TestSim {
        let config = config.build().expect("test settings are valid");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let address = listener.local_addr().expect("bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(ubdcc_sim::run(listener, config, async {
            stopped.await.ok();
        }));
        TestSim {
            address,
            stop: Some(stop),
            server: Some(server),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Stops the simulator and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(server) = self.server.take() {
            let result = within("simulator shutdown", server).await;
            result.expect("server task").expect("server result");
        }
    }

    async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> HttpResponse {
        let uri = format!("http://{}{path}", self.address);
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("valid request");
        let response = within(&uri, self.client.request(request))
            .await
            .unwrap_or_else(|error| panic!("{uri}: {error}"));
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = within(&uri, response.into_body().collect())
            .await
            .expect("response body")
            .to_bytes();
        HttpResponse {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).expect("UTF-8 body"),
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> HttpResponse {
        self.request(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> HttpResponse {
        self.request(Method::POST, path, Some(body)).await
    }

    /// Steps every market `events` times.
    pub async fn advance(&self, events: u32) {
        let response = self
            .post("/sim/advance", &json!({ "events": events }))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }

    /// Injects a fault and returns the reply.
    pub async fn fault(&self, fault: Value) -> Value {
        let response = self.post("/sim/control", &fault).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        response.json()
    }

    /// `GET /sim/stats`.
    pub async fn stats(&self) -> Value {
        self.get("/sim/stats").await.json()
    }

    /// The live book's update id.
    pub async fn latest_update_id(&self, family: &str, symbol: &str) -> u64 {
        let truth = self
            .get(&format!(
                "/sim/truth/latest?family={family}&symbol={symbol}"
            ))
            .await
            .json();
        truth["update_id"].as_u64().expect("update_id")
    }

    /// Opens a WebSocket at `path`.
    pub async fn ws(&self, path: &str) -> WsClient {
        let url = format!("ws://{}{path}", self.address);
        let (stream, _) = within(&url, tokio_tungstenite::connect_async(&url))
            .await
            .unwrap_or_else(|error| panic!("{url}: {error}"));
        WsClient { stream }
    }

    /// Tries a WebSocket handshake at `path` and returns the HTTP status if it is refused.
    pub async fn ws_refused(&self, path: &str) -> Option<(StatusCode, String)> {
        let url = format!("ws://{}{path}", self.address);
        match within(&url, tokio_tungstenite::connect_async(&url)).await {
            Ok(_) => None,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Some((response.status(), body))
            }
            Err(error) => panic!("{url}: unexpected error {error}"),
        }
    }
}

impl Drop for TestSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }
}

/// How a WebSocket ended.
#[derive(Debug)]
pub enum Ending {
    /// A close frame arrived.
    Closed(Option<CloseFrame>),
    /// The connection ended without a close frame.
    Cut,
}

/// A WebSocket client with deadlines on every read.
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        within("send", self.stream.send(Message::text(text)))
            .await
            .expect("send");
    }

    /// Sends a JSON text frame.
    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a JSON text frame; `false` if the connection is already gone.
    pub async fn try_send_json(&mut self, value: &Value) -> bool {
        within("send", self.stream.send(Message::text(value.to_string())))
            .await
            .is_ok()
    }

    /// The next frame that is not a ping or pong (tungstenite answers pings by itself).
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            let message = within("next frame", self.stream.next()).await;
            match message {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return Some(message),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next text frame; fails on anything else.
    pub async fn next_text(&mut self) -> String {
        match self.next_message().await {
            Some(Message::Text(text)) => text.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame as JSON.
    pub async fn next_json(&mut self) -> Value {
        let text = self.next_text().await;
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
    }

    /// Sends a request and returns the next frame as JSON (the reply, when no events flow).
    pub async fn request(&mut self, value: Value) -> Value {
        self.send_json(&value).await;
        self.next_json().await
    }

    /// The next `count` text frames as JSON.
    pub async fn next_jsons(&mut self, count: usize) -> Vec<Value> {
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            values.push(self.next_json().await);
        }
        values
    }

    /// Reads (skipping text frames) until the connection ends.
    pub async fn ending(&mut self) -> Ending {
        loop {
            match within("connection end", self.stream.next()).await {
                Some(Ok(Message::Close(frame))) => return Ending::Closed(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ending::Cut,
            }
        }
    }

    /// Reads every frame until the connection ends, returning the pings' payloads.
    pub async fn pings_until(&mut self, count: usize) -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        while payloads.len() < count {
            match within("ping", self.stream.next()).await {
                Some(Ok(Message::Ping(payload))) => payloads.push(payload.to_vec()),
                Some(Ok(Message::Close(frame))) => {
                    panic!("closed after {} pings: {frame:?}", payloads.len())
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("error after {} pings: {error}", payloads.len()),
                None => panic!("ended after {} pings", payloads.len()),
            }
        }
        payloads
    }
}

/// Unwraps a combined-stream frame into (stream, data).
pub fn unwrap_envelope(frame: &Value) -> (&str, &Value) {
    let stream = frame["stream"]
        .as_str()
        .unwrap_or_else(|| panic!("no stream: {frame}"));
    (stream, &frame["data"])
}

/// `U`, `u` of an event.
pub fn ids(event: &Value) -> (u64, u64) {
    (
        event["U"]
            .as_u64()
            .unwrap_or_else(|| panic!("no U: {event}")),
        event["u"]
            .as_u64()
            .unwrap_or_else(|| panic!("no u: {event}")),
    )
}

/// The key order of a JSON object as written on the wire (serde_json's `Value` sorts keys, so
/// this reads the raw text; good enough for the flat objects checked here).
pub fn top_level_keys(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut depth = 0usize;
    let mut chars = text.char_indices().peekable();
    let mut expecting_key = false;
    while let Some((_, c)) = chars.next() {
        match c {
            '{' | '[' => {
                depth += 1;
                expecting_key = c == '{' && depth == 1;
            }
            '}' | ']' => depth -= 1,
            ',' if depth == 1 => expecting_key = true,
            '"' => {
                let mut s = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    s.push(c);
                }
                if expecting_key && depth == 1 {
                    keys.push(s);
                    expecting_key = false;
                }
            }
            _ => {}
        }
    }
    keys
}

/// A decimal string with the market's fixed decimals as an integer mantissa, so that integer
/// order is numeric order (never string order).
pub fn mantissa(decimal: &str) -> u128 {
    decimal
        .replace('.', "")
        .parse()
        .unwrap_or_else(|error| panic!("bad decimal {decimal:?}: {error}"))
}

/// A reference book written for these tests only: prices as integer mantissas, absolute
/// quantities, zero deletes, Binance's sync rules.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReferenceBook {
    pub bids: BTreeMap<u128, String>,
    pub asks: BTreeMap<u128, String>,
    pub price_text: BTreeMap<u128, String>,
    pub last_update_id: u64,
}

/// Which sync rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRules {
    /// `docs/binance-protocol.md` §4.1.
    Spot,
    /// `docs/binance-protocol.md` §4.3 (futures and options).
    Futures,
}

impl ReferenceBook {
    /// A book from a REST snapshot body.
    pub fn from_snapshot(snapshot: &Value) -> ReferenceBook {
        let mut book = ReferenceBook {
            last_update_id: snapshot["lastUpdateId"].as_u64().expect("lastUpdateId"),
            ..ReferenceBook::default()
        };
        book.apply_levels(&snapshot["bids"], true);
        book.apply_levels(&snapshot["asks"], false);
        book
    }

    fn apply_levels(&mut self, levels: &Value, bids: bool) {
        for level in levels.as_array().expect("levels array") {
            let price = level[0].as_str().expect("price string");
            let quantity = level[1].as_str().expect("quantity string");
            let key = mantissa(price);
            self.price_text.insert(key, price.to_owned());
            let side = if bids { &mut self.bids } else { &mut self.asks };
            if mantissa(quantity) == 0 {
                side.remove(&key);
            } else {
                side.insert(key, quantity.to_owned());
            }
        }
    }

    /// Applies buffered events after the snapshot with the family's rules; fails the test on a
    /// gap or a missing sync point.
    pub fn sync_and_apply(&mut self, events: &[Value], rules: SyncRules) {
        let snapshot_id = self.last_update_id;
        let mut synced = false;
        let mut previous_u = 0;
        for event in events {
            let (first, last) = ids(event);
            if !synced {
                let stale = match rules {
                    SyncRules::Spot => last <= snapshot_id,
                    SyncRules::Futures => last < snapshot_id,
                };
                if stale {
                    continue;
                }
                let spans = match rules {
                    SyncRules::Spot => first <= snapshot_id + 1 && snapshot_id < last,
                    SyncRules::Futures => first <= snapshot_id && snapshot_id <= last,
                };
                assert!(
                    spans,
                    "first event {first}..{last} does not span snapshot {snapshot_id}"
                );
                synced = true;
            } else {
                match rules {
                    SyncRules::Spot => assert!(
                        first <= self.last_update_id + 1,
                        "gap: U {first} after local id {}",
                        self.last_update_id
                    ),
                    SyncRules::Futures => {
                        assert_eq!(event["pu"].as_u64(), Some(previous_u), "pu must chain")
                    }
                }
            }
            self.apply_levels(&event["b"], true);
            self.apply_levels(&event["a"], false);
            self.last_update_id = last;
            previous_u = last;
        }
        assert!(synced, "no event spans snapshot {snapshot_id}");
    }

    /// A side restricted to prices at or better than `boundary` (bids ≥, asks ≤), as text.
    pub fn side_within(&self, bids: bool, boundary: u128) -> Vec<(String, String)> {
        let side = if bids { &self.bids } else { &self.asks };
        side.iter()
            .filter(|(price, _)| {
                if bids {
                    **price >= boundary
                } else {
                    **price <= boundary
                }
            })
            .map(|(price, quantity)| (self.price_text[price].clone(), quantity.clone()))
            .collect()
    }
}
