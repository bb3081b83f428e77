//! A local exchange that speaks Binance's depth protocol, with fault injection, so that the
//! DepthCache engine can be tested without the internet.
//!
//! The simulator shares no code with `ubdcc-engine`, not even message types: it is a second,
//! independent implementation of the protocol (`docs/binance-protocol.md`), so a
//! misreading of the protocol in one cannot hide in the other.
//!
//! # Brief overview
//! - [`SimConfig`] (built with [`SimConfig::builder`]) says how many markets, how fast they
//!   move, the seed, and the limits.
//! - [`run`] serves everything on one bound listener until a shutdown future completes;
//!   [`router`] and [`SimState`] give the same service without the ticker, for tests that step
//!   the markets themselves.
//! - Everything else is the wire: Binance's REST and WebSocket endpoints, plus `/sim/...` for
//!   statistics, the exact book at any recent update id, stepping, and faults.
//!
//! # Markets
//! Per family, `markets` markets (default 10): spot and futures `SIM{i}USDT`, options
//! `SIM{i}-260626-{10000 + 500·i}-C`, COIN-M (`coin_futures`) a perpetual and a quarterly contract
//! per coin (`BTCUSD_PERP`, `BTCUSD_260626`, `ETHUSD_PERP`, ..., then `SIM{k}USD_...`). Each book
//! holds about `book_depth` levels per side (default 1500, so a 1000-level snapshot leaves levels
//! outside the window and clients must prune orphans). Prices and quantities are decimal strings
//! with fixed decimals per market, as Binance writes them: spot 8 and 8 decimals
//! (`"100.00000000"`), futures the tick's and step's decimals (`"100.00"`, `"0.001"`), options 3
//! and 4 (`"100.000"`, `"0.6000"`), COIN-M the tick's decimals and whole contracts (`"100.00"`,
//! `"431"`); the tick and step sizes in `exchangeInfo` match. Market 0 of every family trades
//! around 100.00 with a tick of 0.01, so its best prices keep crossing 99.99 ↔ 100.00 and its sides
//! always hold levels with two and with three integer digits (the lexicographic-prune trap,
//! `docs/binance-protocol.md` §7).
//!
//! Each event applies one to six operations: moves of the price (the best level of one side is
//! consumed and its price joins the other side, pulled back towards the market's anchor),
//! quantity changes, deletions (quantity `"0.00000000"` in the market's decimals), new levels in
//! gaps or inside the spread (mostly near the top), and changes beyond two thirds of the depth
//! (outside a 1000-level snapshot); sides are kept within 16 levels of the depth. An event's
//! update-id span `U..u` is the number of levels it sets; `U` is always the previous `u` + 1 and
//! `pu` the previous `u`.
//!
//! # Determinism
//! The seed, a market's family and index, and `book_depth` fix every market's symbol, decimals,
//! tick, step, initial book and initial update id, and the exact sequence of its updates (ids and
//! levels, as strings). A market's sequence does not depend on the number of markets, on the rate,
//! on timing, on connections, on REST requests or on faults: faults change delivery, never the
//! book (the glitches excepted: changing it is what they are for). Not deterministic: `E` and
//! `T` (wall-clock milliseconds; the `E − T` offset is), which events a connection sees (it starts at the next step after it connects), and which step a
//! timed fault such as `silence` covers. The generator uses its own SplitMix64, so the sequence
//! does not change with a crate update.
//!
//! # Event rate and stream speeds
//! At `rate_hz` (default 10) every market gets one event per tick; a tick that is late is not made
//! up for. Every accepted stream speed of a market carries every event: `@depth`,
//! `@depth@100ms` and `@depth@500ms` differ only in name (the simulator does not aggregate
//! events per speed). `rate_hz = 0` generates events only on `POST /sim/advance`, which makes
//! tests exact.
//!
//! # REST (per family: spot `/api/v3`, futures `/fapi/v1`, options `/eapi/v1`, COIN-M `/dapi/v1`)
//! COIN-M's paths are also served under `/dstream` (`/dstream/dapi/v1/depth`), beside its
//! streams, so that one base URL (`binance.com-coin_futures=http://<sim>/dstream`) reaches both
//! of its hosts; see [`Family::host_prefix`].
//! - `GET <prefix>/depth?symbol=SIM0USDT&limit=1000`: the snapshot in the family's shape
//!   (`docs/binance-protocol.md` §3.2): spot `{"lastUpdateId","bids","asks"}`, futures
//!   `{"lastUpdateId","E","T","bids","asks"}`, options `{"bids","asks","T","lastUpdateId"}`,
//!   COIN-M `{"lastUpdateId","symbol","pair","E","T","bids","asks"}`; levels best first.
//!   `limit`: spot 1–5000 (default 100; larger is truncated to 5000), futures and COIN-M 5, 10,
//!   20, 50, 100, 500, 1000 (default 500), options 10, 20, 50, 100, 500, 1000 (default 100).
//!   Weights: spot 5/25/50/250 for up to 100/500/1000/5000; the derivatives families 2 up to 50,
//!   then 5, 10, 20 (options at 10–50 are documented as 1 or 2; the simulator charges 2). Errors
//!   (HTTP 400): missing symbol -1102, unknown symbol -1121 `Invalid symbol.`, bad limit -1100
//!   `Illegal characters found in parameter 'limit'; legal range is '...'.`
//! - `GET <prefix>/ping`: `{}`, weight 1.
//! - `GET <prefix>/exchangeInfo[?symbol=]`: rate limits and symbols with `PRICE_FILTER`
//!   (`tickSize`) and `LOT_SIZE` (`stepSize`); options list them under `optionSymbols`, COIN-M
//!   gives `contractStatus` instead of `status`. Weight: spot 20, the derivatives families 1.
//! - Every response of these paths carries `X-MBX-USED-WEIGHT-1M` and `X-MBX-USED-WEIGHT`. Limits
//!   per minute and client IP (the TCP peer's): spot 6000, futures 2400, options 2400
//!   (undocumented by Binance; the futures value), COIN-M 2400, each family on a host of its own.
//!   Windows are clock minutes. A request that would exceed the limit gets 429 (`-1003`) with
//!   `Retry-After` = seconds to the window's end; any request before that time has passed gets
//!   418 (`-1003`, banned) with `Retry-After` = the ban's length: 2 minutes first, doubling per
//!   further ban up to 3 days. Refused requests add no weight; requests with bad parameters cost
//!   the weight of their (or the default) `limit`. The options snapshot can lag the stream by
//!   `options_snapshot_lag` (`docs/binance-protocol.md` §4.4): it is then the book as it was that
//!   long ago.
//!
//! # WebSocket
//! - Spot: `/ws`, `/ws/<stream>[/<stream>...]` (raw events), `/stream?streams=a/b` (combined
//!   `{"stream":"<name>","data":<event>}`). Futures and options: `/public/ws...` and
//!   `/public/stream?streams=...`; the symbol decides the family. COIN-M (`dstream`):
//!   `/dstream/ws...` and `/dstream/stream?streams=...`, standing for `dstream.binance.com`'s
//!   `/ws` and `/stream`. The un-routed `/ws` and `/stream` serve spot unless
//!   [`SimConfigBuilder::unrouted_venue`] gives them to another venue; one port cannot give them
//!   to two, so spot streams are then not served at all.
//! - Streams: `<symbol lowercase>@depth`, `@depth@100ms`, `@depth@500ms`; spot accepts `@depth`
//!   and `@depth@100ms`, futures and COIN-M all three, options the last two. An invalid name in
//!   the URL refuses the handshake (HTTP 400, `{"code":-1,"msg":"Invalid stream name: ..."}`).
//! - Events (`docs/binance-protocol.md` §3.1): spot `e,E,s,U,u,b,a`; futures and options
//!   `e,E,T,s,U,u,pu,b,a`; COIN-M `e,E,T,s,ps,U,u,pu,b,a` (`ps`: the pair, `BTCUSD`).
//! - Requests: `{"method":"SUBSCRIBE"|"UNSUBSCRIBE","params":[...],"id":N}` →
//!   `{"result":null,"id":N}`; `LIST_SUBSCRIPTIONS` → `{"result":[names],"id":N}`; `SET_PROPERTY
//!   ["combined",bool]` / `GET_PROPERTY ["combined"]`. Errors are
//!   `{"error":{"code":C,"msg":"..."},"id":N}` with Binance's codes and texts: 3 invalid JSON, 2
//!   invalid request (unknown method, missing or bad id, `invalid stream`, too many streams, too
//!   many parameters), 1 non-boolean value, 0 unknown property. Ids: spot an i64, an alphanumeric
//!   string of at most 36 characters, or null; futures, options and COIN-M an unsigned integer. A
//!   request is applied whole or not at all. As on Binance, a well-formed stream of a symbol the
//!   exchange does not list (`nosuchusdt@depth`) is accepted (`{"result":null}`), held and listed,
//!   and never carries an event (the `refuse_subscribe` fault refuses it instead); in the URL it
//!   still refuses the handshake.
//! - Limits per connection (spot / futures, options and COIN-M): client frames (text, ping,
//!   pong, binary) per sliding second 5 / 10, beyond which the connection is closed (1008 `Too many
//!   requests`); streams 1024 / 200, beyond which SUBSCRIBE gets an error reply; a ping every
//!   20 s / 3 min carrying a unique payload, and a close (1008 `Pong timeout`) when a ping stays
//!   unanswered for 60 s / 10 min (only a pong echoing an outstanding payload answers it);
//!   a close (1001) after 24 h. A connection that falls more than 4096 steps behind is closed
//!   (1008). All configurable through [`VenueLimits`].
//!
//! # Faults: `POST /sim/control`
//! A JSON object with `"fault"` and its fields. Market faults name `family` and `symbol`, apply
//! to the events generated after the reply, and the reply lists
//! `{"family","symbol","after_update_id"}` per market: the first affected event has
//! `U = after_update_id + 1`. Faults change delivery only; the truth keeps every event.
//! - `{"fault":"drop","family":"spot","symbol":"SIM1USDT","count":3}`: the next 3 events of
//!   the market reach no connection (a gap).
//! - `{"fault":"duplicate",...,"count":N}`: each of the next N events is sent twice in a row.
//! - `{"fault":"reorder",...,"count":N}`: the next N pairs of events are swapped (event k+1, then
//!   event k).
//! - `{"fault":"malformed",...,"count":N}`: N frames of truncated (invalid) JSON go to the
//!   market's subscribers right before its next event; the events themselves are intact (combine
//!   with `drop` to replace an event).
//! - `{"fault":"stale_snapshot",...,"count":N,"behind_events":K}`: the next N depth snapshots
//!   of the market are the exact book K updates (default 50) before the newest, with that
//!   `lastUpdateId`.
//! - `{"fault":"delist","family":"spot","symbol":"SIM1USDT"}`: until `clear`, the market's depth
//!   snapshots answer HTTP 400 `{"code":-1121,"msg":"Invalid symbol."}` (what Binance answers
//!   for a symbol it does not list) and its stream carries nothing.
//! - `{"fault":"silence","family":..,"symbol":..,"duration_ms":D}`: for D ms the selected
//!   markets' events reach nobody (they are lost); connections stay open and keep pinging.
//!   `family` and `symbol` are optional (absent: every family, every market).
//! - `{"fault":"lag","family":..,"symbol":..,"lag_ms":L,"duration_ms":D}`: the events of the
//!   selected markets generated in the next D ms reach subscribers L ms late, in order, none
//!   lost, each with its own (old) `E`: a client that falls behind the exchange.
//! - `{"fault":"disconnect","family":..,"symbol":..}`: cuts the selected stream connections
//!   without a close frame, as a network failure would: all (no fields), those of the family's
//!   venue (`family`), or those holding a stream of the symbol (`symbol`, with or without
//!   `family`).
//! - `{"fault":"server_shutdown","family":..,"symbol":..,"close_after_ms":C}`: the selected
//!   connections get `{"e":"serverShutdown","E":ms}` (combined: under the stream
//!   `!serverShutdown`), keep serving for C ms (default 10 000; Binance documents no figure,
//!   only "reconnect as soon as possible"; 0 closes at once), then a close (1001). Binance
//!   documents the event for spot only; the simulator sends the same shape on any venue it is
//!   aimed at.
//! - `{"fault":"refuse_subscribe","symbol":..}`: until `clear`, a `SUBSCRIBE` naming a stream
//!   of the symbol (listed or not, any venue) is refused whole with code 2 `Invalid request:
//!   invalid stream`; without `symbol`, every unlisted symbol's stream is (the behaviour of a
//!   stricter server than Binance). Faults add up.
//! - `{"fault":"rest_status","family":"futures","status":429,"duration_ms":D}`: every REST
//!   request of the family (every family if absent) gets 429 or 418 with `Retry-After` for D ms;
//!   a forced 429 does not escalate to a ban.
//! - Glitches (`glitch`) change the exchange's book or ids *without* an event (ids continue as
//!   they stand; the truth and snapshots follow the glitched book; `clear` does not undo them):
//!   - `{"fault":"silent_change","family":..,"symbol":..,"side":"bid","level":L}`: the level L
//!     places from the best (default 5) of the side (`bid` default, or `ask`) gets one step more
//!     quantity;
//!   - `{"fault":"vanish_levels",...,"side":"ask","count":N}`: the best N (default 3) levels of
//!     the side (default `ask`) vanish, so the next events, which trade and quote into the space
//!     they left, cross a book that still holds them;
//!   - `{"fault":"reset_ids",...,"behind":K}`: the update ids continue K (default 1 000 000)
//!     lower, an exchange-side reset; the truth's history restarts there.
//!
//!   The reply's `after_update_id` is the id the next event follows.
//! - `{"fault":"clear"}`: disarms every market fault (an event held for a swap is still
//!   delivered, after the next one), forced statuses, subscription refusals, back-offs and bans.
//!
//! Errors: 400 for a bad body, 404 for an unknown symbol, as `{"error":"..."}`.
//!
//! # Other `/sim` endpoints
//! - `GET /sim/truth?family=spot&symbol=SIM0USDT&update_id=U`: the exact full book right after
//!   update id U: `{"family","symbol","update_id","bids":[[p,q]...],"asks":[...]}`, every level,
//!   best first, in the market's decimal strings. The history holds at least the configured
//!   `history` (default 60 s) plus the options lag at the configured rate, between 1024 and
//!   100 000 updates per market. 404 with a message when U is too old, in the future, or inside
//!   one event's `U..u` (books exist only between events).
//! - `GET /sim/truth/latest?family=&symbol=`: the same for the live book.
//! - `POST /sim/advance` with `{"events":N}` (1–1000, default 1): steps every market N times now;
//!   with `"family"` and `"symbol"` only that market (the others stay quiet).
//! - `GET /sim/stats`: `steps`, `faults_injected`; per family under `rest`: the weight limit,
//!   the current and up to 10 previous windows (used and requested weight), the highest used and
//!   requested weight of any one IP's window, requests, 429s, 418s, bans, and depth requests and
//!   served snapshots per symbol, summed over the client IPs, and the same per IP (current
//!   window, highest windows, ban end, counts) under `by_ip`; per venue under `websocket`:
//!   connections opened and open, closes by reason, client messages, control messages, error
//!   replies, the most client frames any connection sent within a second, pings sent and pongs
//!   matched.
//!
//! # Replay
//! [`replay::replay`] serves a recording made by `ubdcc dcn --record` through the same protocol
//! (streams at the recorded pace × speed, REST depth at the recorded update ids);
//! [`replay::recording::Recording`] reads one (`docs/recording.md`).
//!
//! # Example
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! let config = ubdcc_sim::SimConfig::builder().markets(2).seed(7).build()
//!     .map_err(std::io::Error::other)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("listening on {}", listener.local_addr()?);
//! ubdcc_sim::run(listener, config, async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```
//!
//! # Layout
//! `family` (per-family protocol constants), `market` (a market's static spec), `book`,
//! `generator` (how books evolve), `glitch` (changes without events), `update`, `history` (the past, for truth and stale
//! snapshots), `faults` (delivery faults per market), `markets` (the exchange), `weight` (REST
//! budgets), `wire` (JSON shapes), `rest`, `ws` (stream connections), `control` (fault API),
//! `sim_api` (truth, stats, advance), `server` (state, ticker, router, run), `config`,
//! `error`, `rng`, `decimal`, `clock`, `stats`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod book;
mod clock;
mod config;
mod control;
mod decimal;
mod error;
mod family;
mod faults;
mod generator;
mod glitch;
mod history;
mod market;
mod markets;
pub mod replay;
mod rest;
mod rng;
mod server;
mod sim_api;
mod stats;
mod update;
mod weight;
mod wire;
mod ws;

pub use config::{SimConfig, SimConfigBuilder, VenueLimits};
pub use error::{ConfigError, SimRequestError, TruthError};
pub use family::{Family, Venue};
pub use server::{SimState, router, run};
