use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use ubdcc_sim::{Venue, VenueLimits};

use crate::support::{TestSim, config, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_carry_unique_payloads_and_pongs_keep_the_connection_open() {
    // Pings every 25 ms against a 2 s deadline: 120 pings span well over the deadline, so
    // the connection survives only because the client's pongs answer them.
    let limits = VenueLimits {
        ping_interval: Duration::from_millis(25),
        pong_timeout: Duration::from_millis(2000),
        max_messages_per_second: 1000,
        ..VenueLimits::binance(Venue::Spot)
    };
    let sim = TestSim::start(config().venue_limits(Venue::Spot, limits)).await;
    let mut ws = sim.ws("/ws/sim0usdt@depth").await;
    let payloads = ws.pings_until(120).await;
    assert!(
        payloads.iter().all(|p| !p.is_empty()),
        "pings carry a payload"
    );
    let mut unique = payloads.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), payloads.len(), "payloads are unique");
    let stats = sim.stats().await;
    assert!(
        stats["websocket"]["spot"]["pongs_matched"].as_u64() >= Some(50),
        "{stats}"
    );
    assert_eq!(stats["websocket"]["spot"]["closed_for_pong_timeout"], 0);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_pongs_is_disconnected() {
    let limits = VenueLimits {
        ping_interval: Duration::from_millis(50),
        pong_timeout: Duration::from_millis(300),
        ..VenueLimits::binance(Venue::FStream)
    };
    let sim = TestSim::start(config().venue_limits(Venue::FStream, limits)).await;
    // A hand-made WebSocket client: it completes the handshake and then only reads, so it can
    // never answer a ping (tungstenite would answer them automatically).
    let mut socket = within("connect", TcpStream::connect(sim.address))
        .await
        .expect("connect");
    let handshake = format!(
        "GET /public/ws/sim0usdt@depth HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        sim.address
    );
    socket
        .write_all(handshake.as_bytes())
        .await
        .expect("handshake");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = within("server closes the silent client", socket.read(&mut buffer)).await;
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    let stats = sim.stats().await;
    assert_eq!(
        stats["websocket"]["fstream"]["closed_for_pong_timeout"], 1,
        "{stats}"
    );
    assert!(stats["websocket"]["fstream"]["pings_sent"].as_u64() >= Some(1));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_count_towards_the_message_rate() {
    // Pings every 20 ms make the client answer 50 pongs a second, far over spot's 5.
    let limits = VenueLimits {
        ping_interval: Duration::from_millis(20),
        ..VenueLimits::binance(Venue::Spot)
    };
    let sim = TestSim::start(config().venue_limits(Venue::Spot, limits)).await;
    let mut ws = sim.ws("/ws/sim0usdt@depth").await;
    // The client keeps writing pongs, so a reset can overtake the close frame.
    if let crate::support::Ending::Closed(frame) = ws.ending().await {
        assert_eq!(frame.map(|f| u16::from(f.code)), Some(1008));
    }
    let stats = sim.stats().await;
    assert_eq!(
        stats["websocket"]["spot"]["closed_for_message_rate"], 1,
        "{stats}"
    );
    sim.stop().await;
}
