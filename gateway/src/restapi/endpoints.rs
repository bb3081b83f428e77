//! The public API as data: every endpoint restapi serves, with its methods, parameters and
//! answer. The router is built from this table ([`super::RestApi::router`]) and so is the
//! OpenAPI document ([`openapi`], served at `/openapi.json`, kept in `docs/openapi.json`), so the
//! two cannot drift apart.

use serde_json::{Map, Value, json};
use ubdcc_shm::Side;

use super::forward::{self, CachedView};
use super::reads::ReadKind;
use crate::book_query::QueryKind;
use crate::identity::VERSION;

/// How an endpoint is answered.
#[derive(Clone, Copy)]
pub enum Handling {
    /// A read of one book (shared memory or a DCN).
    Read(ReadKind),
    /// Many books, each like `get_book`.
    Books,
    /// Best bid and ask of many markets.
    Bbo,
    /// Forwarded to mgmt.
    Forward,
    /// Forwarded to mgmt; from this pod's copy (#8000) when mgmt is down.
    View(CachedView),
}

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text.
    Text,
    /// An integer.
    Integer,
    /// A number.
    Number,
    /// A list of texts (a JSON array, or comma-separated in a query).
    TextList,
    /// `true` or `false` (JSON, or that text in any case).
    Boolean,
}

/// One parameter (query, or a key of the JSON body on POST).
#[derive(Clone, Copy)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Required (a missing one is the endpoint's #10xx error).
    pub required: bool,
    /// What it means.
    pub description: &'static str,
}

/// One endpoint.
pub struct Endpoint {
    /// Its path, e.g. `/get_asks`.
    pub path: &'static str,
    /// Its `event`.
    pub event: &'static str,
    /// `true` when POST with a JSON body works as well as GET.
    pub post: bool,
    /// One line about it.
    pub summary: &'static str,
    /// Its parameters (every endpoint also takes `debug`).
    pub params: &'static [Param],
    /// Keys of its OK answer beside `event` and `result`.
    pub payload: &'static [&'static str],
    /// How it is answered.
    pub handling: Handling,
}

const fn param(name: &'static str, kind: Kind, required: bool, description: &'static str) -> Param {
    Param {
        name,
        kind,
        required,
        description,
    }
}

const EXCHANGE: Param = param(
    "exchange",
    Kind::Text,
    true,
    "Exchange string, e.g. `binance.com`.",
);
const MARKET: Param = param(
    "market",
    Kind::Text,
    true,
    "Market symbol, case-sensitive, e.g. `BTCUSDT`.",
);
const LIMIT_COUNT: Param = param(
    "limit_count",
    Kind::Integer,
    false,
    "Most levels to return (0 returns none; negative is #1101; more than a shallow book covers yet is #1115).",
);
const THRESHOLD_VOLUME: Param = param(
    "threshold_volume",
    Kind::Number,
    false,
    "Levels up to this quote notional (price × quantity); the first level is always included.",
);
const MAX_AGE: Param = param(
    "max_age_ms",
    Kind::Integer,
    false,
    "Refuse (#1103) a book older than this many milliseconds.",
);
const READ: &[Param] = &[EXCHANGE, MARKET, LIMIT_COUNT, THRESHOLD_VOLUME, MAX_AGE];
const DESIRED_QUANTITY: Param = param(
    "desired_quantity",
    Kind::Integer,
    false,
    "Replicas on distinct DCNs (default 1; 0 = inactive).",
);
const UPDATE_INTERVAL: Param = param(
    "update_interval",
    Kind::Integer,
    false,
    "Diff stream interval in ms (the exchange's default when unset).",
);
const REFRESH_INTERVAL: Param = param(
    "refresh_interval",
    Kind::Integer,
    false,
    "Resync a synced book after this many seconds.",
);
const RECORD: Param = param(
    "record",
    Kind::Boolean,
    false,
    "Record the book (default false): its frames, starting books and sync markers, on the DCNs \
     started with `--record-books DIR` (docs/recording.md). A DCN without a recording directory \
     keeps the book unrecorded; `get_depthcache_info` then shows `RECORD_WARNING`.",
);
const CREATE_ONE: &[Param] = &[
    EXCHANGE,
    MARKET,
    DESIRED_QUANTITY,
    UPDATE_INTERVAL,
    REFRESH_INTERVAL,
    RECORD,
];
const CREATE_MANY: &[Param] = &[
    EXCHANGE,
    param(
        "markets",
        Kind::TextList,
        true,
        "Markets to create; existing ones are skipped.",
    ),
    DESIRED_QUANTITY,
    UPDATE_INTERVAL,
    REFRESH_INTERVAL,
    RECORD,
];
const BOOK: &[Param] = &[EXCHANGE, MARKET];
const MARKETS: Param = param(
    "markets",
    Kind::TextList,
    false,
    "Markets (a JSON array, or comma-separated in a query).",
);
const BOOKS: &[Param] = &[
    EXCHANGE,
    param(
        "markets",
        Kind::TextList,
        true,
        "Markets to read (at most 1 000; a JSON array, or comma-separated in a query).",
    ),
    LIMIT_COUNT,
    THRESHOLD_VOLUME,
    MAX_AGE,
];
const BBO: &[Param] = &[EXCHANGE, MARKETS];
const FILL: &[Param] = &[
    EXCHANGE,
    MARKET,
    param(
        "side",
        Kind::Text,
        true,
        "`buy` (takes the asks) or `sell` (takes the bids).",
    ),
    param(
        "quantity",
        Kind::Number,
        false,
        "Base quantity to fill (or `quote_quantity`).",
    ),
    param(
        "quote_quantity",
        Kind::Number,
        false,
        "Quote amount to fill (or `quantity`).",
    ),
    MAX_AGE,
];
const STATS: &[Param] = &[
    EXCHANGE,
    MARKET,
    param(
        "limit_count",
        Kind::Integer,
        false,
        "Levels per side of the imbalance (default 10).",
    ),
    param(
        "bps",
        Kind::TextList,
        false,
        "Band half-widths in bps of the mid (default 10,50,100).",
    ),
    MAX_AGE,
];

/// Every public endpoint.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/get_asks",
        event: "GET_ASKS",
        post: false,
        summary: "The asks of a synced book, best (lowest) first, as [price, quantity] floats; `partial_depth` N when the book covers only its best N levels yet (a shallow start being deepened) and no `limit_count` within N was asked.",
        params: READ,
        payload: &[
            "asks",
            "last_update_id",
            "event_time",
            "age_ms",
            "receive_age_ms",
        ],
        handling: Handling::Read(ReadKind::Side(Side::Asks)),
    },
    Endpoint {
        path: "/get_bids",
        event: "GET_BIDS",
        post: false,
        summary: "The bids of a synced book, best (highest) first, as [price, quantity] floats; `partial_depth` N when the book covers only its best N levels yet (a shallow start being deepened) and no `limit_count` within N was asked.",
        params: READ,
        payload: &[
            "bids",
            "last_update_id",
            "event_time",
            "age_ms",
            "receive_age_ms",
        ],
        handling: Handling::Read(ReadKind::Side(Side::Bids)),
    },
    Endpoint {
        path: "/get_book",
        event: "GET_BOOK",
        post: false,
        summary: "Both sides of a synced book from one consistent read (one update id), best first, as [price, quantity] floats; `partial_depth` as for get_asks.",
        params: READ,
        payload: &[
            "asks",
            "bids",
            "last_update_id",
            "event_time",
            "age_ms",
            "receive_age_ms",
        ],
        handling: Handling::Read(ReadKind::Query(QueryKind::Book)),
    },
    Endpoint {
        path: "/get_books",
        event: "GET_BOOKS",
        post: true,
        summary: "Many books of one exchange in one call, read in parallel: `books` maps each market to its get_book answer (without `event`/`result`) or to its own `error_id` and `message`.",
        params: BOOKS,
        payload: &["books"],
        handling: Handling::Books,
    },
    Endpoint {
        path: "/get_bbo",
        event: "GET_BBO",
        post: false,
        summary: "Best bid and ask of the markets asked for (every book of the exchange without `markets`): `bbo` maps each to `{bid:[p,q], ask:[p,q], last_update_id, event_time, age_ms, receive_age_ms}` from one read, or to its error (a book not synced shows its status, never a stale price).",
        params: BBO,
        payload: &["bbo"],
        handling: Handling::Bbo,
    },
    Endpoint {
        path: "/get_fill_price",
        event: "GET_FILL_PRICE",
        post: false,
        summary: "The price of a fill against a synced book, computed on one consistent read: average and worst price, quantity and quote filled, levels used, slippage in bps against the best price; `complete` false when the book's levels run out (#1116 for a bad side or amount).",
        params: FILL,
        payload: &[
            "average_price",
            "worst_price",
            "filled_quantity",
            "filled_quote",
            "complete",
            "slippage_bps",
            "levels_used",
            "side",
            "last_update_id",
            "event_time",
            "age_ms",
            "receive_age_ms",
        ],
        handling: Handling::Read(ReadKind::Query(QueryKind::FillPrice)),
    },
    Endpoint {
        path: "/get_depth_stats",
        event: "GET_DEPTH_STATS",
        post: false,
        summary: "The shape of a synced book's top, on one consistent read: mid, spread (and in bps), microprice, imbalance of the top `limit_count` levels (default 10), and the quantity within ±`bps` of the mid on each side (default 10,50,100).",
        params: STATS,
        payload: &[
            "mid",
            "spread",
            "spread_bps",
            "microprice",
            "imbalance",
            "top_n",
            "bands",
            "last_update_id",
            "event_time",
            "age_ms",
            "receive_age_ms",
        ],
        handling: Handling::Read(ReadKind::Query(QueryKind::DepthStats)),
    },
    Endpoint {
        path: "/create_depthcache",
        event: "CREATE_DEPTHCACHE",
        post: true,
        summary: "Create a DepthCache; its replicas are placed on DCNs at once.",
        params: CREATE_ONE,
        payload: &[],
        handling: Handling::Forward,
    },
    Endpoint {
        path: "/create_depthcaches",
        event: "CREATE_DEPTHCACHES",
        post: true,
        summary: "Create several DepthCaches of one exchange.",
        params: CREATE_MANY,
        payload: &["created", "existing"],
        handling: Handling::Forward,
    },
    Endpoint {
        path: "/stop_depthcache",
        event: "STOP_DEPTHCACHE",
        post: true,
        summary: "Stop a DepthCache on every DCN.",
        params: BOOK,
        payload: &[],
        handling: Handling::Forward,
    },
    Endpoint {
        path: "/get_cluster_info",
        event: "GET_CLUSTER_INFO",
        post: true,
        summary: "The cluster state: DepthCaches, pods, credentials (masked).",
        params: &[],
        payload: &["db", "version"],
        handling: Handling::View(forward::cluster_info),
    },
    Endpoint {
        path: "/get_depthcache_list",
        event: "GET_DEPTHCACHE_LIST",
        post: true,
        summary: "Every DepthCache record, by exchange and market.",
        params: &[],
        payload: &["depthcache_list"],
        handling: Handling::View(forward::depthcache_list),
    },
    Endpoint {
        path: "/get_depthcache_info",
        event: "GET_DEPTHCACHE_INFO",
        post: true,
        summary: "One DepthCache record with its replicas and their status.",
        params: BOOK,
        payload: &["depthcache_info"],
        handling: Handling::View(forward::depthcache_info),
    },
    credentials::ADD,
    credentials::REMOVE,
    credentials::LIST,
    // The seeds' README documents these names for the same three endpoints.
    Endpoint {
        path: "/ubdcc_add_credentials",
        ..credentials::ADD
    },
    Endpoint {
        path: "/ubdcc_remove_credentials",
        ..credentials::REMOVE
    },
    Endpoint {
        path: "/ubdcc_get_credentials_list",
        ..credentials::LIST
    },
];

/// The credential endpoints, which are also served under the seeds' `/ubdcc_*` names.
mod credentials {
    use super::{Endpoint, Handling, Kind, param};

    pub(super) const ADD: Endpoint = Endpoint {
        path: "/add_credentials",
        event: "ADD_CREDENTIALS",
        post: true,
        summary: "Add an API key for an account group; DCNs use it for their snapshots.",
        params: &[
            param(
                "account_group",
                Kind::Text,
                true,
                "binance.com, binance.com-futures-testnet, binance.com-testnet, binance.tr or binance.us.",
            ),
            param("api_key", Kind::Text, true, "The API key."),
            param(
                "api_secret",
                Kind::Text,
                true,
                "The API secret (never returned).",
            ),
        ],
        payload: &["id"],
        handling: Handling::Forward,
    };

    pub(super) const REMOVE: Endpoint = Endpoint {
        path: "/remove_credentials",
        event: "REMOVE_CREDENTIALS",
        post: true,
        summary: "Remove credentials by id.",
        params: &[param(
            "id",
            Kind::Text,
            true,
            "The id add_credentials returned.",
        )],
        payload: &[],
        handling: Handling::Forward,
    };

    pub(super) const LIST: Endpoint = Endpoint {
        path: "/get_credentials_list",
        event: "GET_CREDENTIALS_LIST",
        post: true,
        summary: "The credentials, keys masked, no secrets.",
        params: &[],
        payload: &["credentials"],
        handling: Handling::Forward,
    };
}

fn schema(kind: Kind) -> Value {
    match kind {
        Kind::Text => json!({"type": "string"}),
        Kind::Integer => json!({"type": "integer"}),
        Kind::Number => json!({"type": "number"}),
        Kind::TextList => json!({"type": "array", "items": {"type": "string"}}),
        Kind::Boolean => json!({"type": "boolean"}),
    }
}

/// Query parameters as sent: text (a number is its decimal text; `None` means not set).
fn query_parameter(param: &Param) -> Value {
    let mut schema = schema(param.kind);
    if param.kind == Kind::TextList {
        schema = json!({"type": "string", "description": "comma-separated"});
    }
    json!({
        "name": param.name,
        "in": "query",
        "required": param.required,
        "description": param.description,
        "schema": schema,
    })
}

fn debug_parameter() -> Value {
    json!({"name": "debug", "in": "query", "required": false,
           "description": "`true` adds the `debug` block (timings, url, used pods).",
           "schema": {"type": "string"}})
}

fn request_body(endpoint: &Endpoint) -> Value {
    let mut properties = Map::new();
    for param in endpoint.params {
        let mut nullable = schema(param.kind);
        nullable["nullable"] = true.into();
        properties.insert(param.name.into(), nullable);
    }
    properties.insert(
        "debug".into(),
        json!({"anyOf": [{"type": "string"}, {"type": "boolean"}]}),
    );
    json!({"required": false, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "additionalProperties": true}}}})
}

fn operation(endpoint: &Endpoint, method: &str) -> Value {
    let mut operation = json!({
        "operationId": format!("{}_{method}", endpoint.path.trim_start_matches('/')),
        "summary": endpoint.summary,
        "responses": {
            "200": {"description": format!("`{}` envelope: OK with {}, or ERROR with `error_id` and `message`.",
                        endpoint.event,
                        if endpoint.payload.is_empty() { "nothing more".to_owned() } else { format!("`{}`", endpoint.payload.join("`, `")) }),
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}},
            "401": {"description": "A bearer token is configured and missing or wrong (#1109).",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}},
        },
    });
    let mut parameters: Vec<Value> = if method == "get" {
        endpoint.params.iter().map(query_parameter).collect()
    } else {
        operation["requestBody"] = request_body(endpoint);
        Vec::new()
    };
    parameters.push(debug_parameter());
    operation["parameters"] = Value::Array(parameters);
    operation
}

/// The OpenAPI 3 document of the public API.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for endpoint in ENDPOINTS {
        let mut item = Map::new();
        item.insert("get".into(), operation(endpoint, "get"));
        if endpoint.post {
            item.insert("post".into(), operation(endpoint, "post"));
        }
        paths.insert(endpoint.path.into(), Value::Object(item));
    }
    paths.insert(
        "/test".into(),
        json!({"get": {"operationId": "test_get", "summary": "Detect the service: `app.name` is `ubdcc-restapi`.",
            "responses": {"200": {"description": "`TEST` envelope.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}}}}}),
    );
    for (path, item) in push_paths() {
        paths.insert(path.into(), item);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "ubdcc public REST API",
            "version": VERSION,
            "description": "The UNICORN Binance DepthCache Cluster's API, served by `ubdcc restapi`. Every answer the application builds is HTTP 200 with an envelope: `result` OK or ERROR, `event`, and on errors `error_id` and `message`. `null`, a missing parameter, an empty one and the text `None` all mean \"not set\".",
        },
        "paths": paths,
        "components": {"schemas": {"Envelope": {
            "type": "object",
            "required": ["result", "event"],
            "properties": {
                "result": {"type": "string", "enum": ["OK", "ERROR"]},
                "event": {"type": "string"},
                "error_id": {"type": "string", "pattern": "^#[0-9]{4}$"},
                "message": {"type": "string"},
                "error": {"type": "string"},
            },
            "additionalProperties": true,
        }}},
    })
}

/// `/ws` and `/sse`: push streams of the books in this host's shared memory (issue 15).
fn push_paths() -> [(&'static str, Value); 2] {
    const STREAMS: &str = "Stream names: `<exchange>:<MARKET>@bbo` (best bid/ask on every change of the top: `{\"b\":[p,q],\"a\":[p,q],\"u\":…,\"E\":…}`, with `\"replica_switched\":true` on the first message from another replica, whose `u` may be lower), `<exchange>:<MARKET>@book<N>` with 1 ≤ N ≤ 1000 (a snapshot `{\"snapshot\":true,\"bids\":[…],\"asks\":[…],\"u\":…,\"E\":…,\"depth\":…}`, then diffs of the top-N view, quantity 0 removing a level, and a new snapshot after any resync, failover or gap, and when the book's `depth` (levels it is complete to; below N the view is partial) changes below N), each optionally followed by `@<interval>ms` (10 to 60000) for a conflated stream (at most one data message per interval, latest state wins); numbers are plain decimal without leading zeros, and messages and LIST_SUBSCRIPTIONS carry each name exactly as subscribed. Messages are `{\"stream\":…,\"data\":…}`; `{\"status\":\"out_of_sync\",\"reason\":…}` and `{\"status\":\"synced\"}` tell when a book cannot be served and when it can again. Only books with a replica in this host's shared memory are served (others are refused with #1117). A client that reads nothing for 5 s is cut. At most 64 `@bookN` streams with N > 100 per connection, 1024 push clients per peer address; a web page may connect only from an IP address or localhost (its `Origin`) unless a bearer token is sent.";
    let envelope =
        json!({"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}});
    let unauthorized = json!({"description": "A bearer token is configured and missing or wrong (#1109).", "content": envelope});
    let ws = json!({"get": {
        "operationId": "ws_get",
        "summary": format!("WebSocket push streams, Binance-style: send `{{\"method\":\"SUBSCRIBE\",\"params\":[\"binance.com:BTCUSDT@book20\"],\"id\":1}}`, answered `{{\"result\":null,\"id\":1}}`; also `UNSUBSCRIBE` and `LIST_SUBSCRIPTIONS`; bad requests get Binance's `{{\"error\":{{\"code\":…,\"msg\":…}},\"id\":…}}`. At most 1024 streams and 10 requests a second per connection. {STREAMS}"),
        "responses": {
            "101": {"description": "Switched to the WebSocket protocol."},
            "401": unauthorized,
            "403": {"description": "A web page whose `Origin` is not an IP address or localhost, without a bearer token (#1117).", "content": envelope},
            "426": {"description": "Not a WebSocket upgrade request (#1117).", "content": envelope},
            "503": {"description": "Push is off on this restapi (it runs with --no-local-reads), or it has its most clients in all or from this address (#1117).", "content": envelope},
        },
    }});
    let sse = json!({"get": {
        "operationId": "sse_get",
        "summary": format!("The same push streams as Server-Sent Events: each message is one event whose data is the JSON `/ws` sends; a client cut for reading too slowly gets a last `event: cut`. {STREAMS}"),
        "parameters": [{"name": "streams", "in": "query", "required": true,
            "description": "Stream names, comma-separated (at most 1024; more are refused before any is parsed).",
            "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": "An event stream, or an ERROR envelope (#1117) for a missing or bad stream name or a book not on this host.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}},
                                "application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}},
            "401": unauthorized,
            "403": {"description": "A web page whose `Origin` is not an IP address or localhost, without a bearer token (#1117).", "content": envelope},
            "429": {"description": "More than 20 `/sse` requests a second from this address (#1117).", "content": envelope},
            "503": {"description": "Push is off on this restapi (it runs with --no-local-reads), or it has its most clients in all or from this address (#1117).", "content": envelope},
        },
    }});
    [("/ws", ws), ("/sse", sse)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_in_the_repository_is_the_generated_one() {
        let generated = serde_json::to_string_pretty(&openapi()).unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let stored = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            stored == generated,
            "docs/openapi.json is out of date: run `cargo run -- openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn every_endpoint_is_documented_once_with_its_methods() {
        let document = openapi();
        for endpoint in ENDPOINTS {
            let item = &document["paths"][endpoint.path];
            assert!(item["get"].is_object(), "{}", endpoint.path);
            assert_eq!(item["post"].is_object(), endpoint.post, "{}", endpoint.path);
        }
        for push in ["/ws", "/sse"] {
            assert!(document["paths"][push]["get"].is_object(), "{push}");
        }
    }
}
