use serde_json::Value;

use crate::support::{TestSim, config, unwrap_envelope};

/// An event without its wall-clock times.
fn without_times(event: &Value) -> Value {
    let mut event = event.clone();
    if let Some(object) = event.as_object_mut() {
        object.remove("E");
        object.remove("T");
    }
    event
}

async fn record(seed: u64) -> (Vec<Value>, Vec<Value>) {
    let sim = TestSim::start(config().seed(seed)).await;
    let mut spot = sim
        .ws("/stream?streams=sim0usdt@depth/sim1usdt@depth")
        .await;
    let mut derivatives = sim
        .ws("/public/stream?streams=sim1usdt@depth/sim1-260626-10500-c@depth@100ms")
        .await;
    sim.advance(40).await;
    let spot_events: Vec<Value> = spot
        .next_jsons(80)
        .await
        .iter()
        .map(|f| without_times(unwrap_envelope(f).1))
        .collect();
    let derivative_events: Vec<Value> = derivatives
        .next_jsons(80)
        .await
        .iter()
        .map(|f| without_times(unwrap_envelope(f).1))
        .collect();
    let mut snapshots = Vec::new();
    for path in [
        "/api/v3/depth?symbol=SIM1USDT&limit=5000",
        "/fapi/v1/depth?symbol=SIM0USDT&limit=1000",
        "/eapi/v1/depth?symbol=SIM1-260626-10500-C&limit=1000",
    ] {
        snapshots.push(without_times(&sim.get(path).await.json()));
    }
    sim.stop().await;
    ([spot_events, derivative_events].concat(), snapshots)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_events_and_books() {
    let (events_a, snapshots_a) = record(7).await;
    let (events_b, snapshots_b) = record(7).await;
    assert_eq!(events_a.len(), 160);
    assert_eq!(events_a, events_b);
    assert_eq!(snapshots_a, snapshots_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_seeds_give_different_books() {
    let (events_a, snapshots_a) = record(1).await;
    let (events_b, snapshots_b) = record(2).await;
    assert_ne!(events_a, events_b);
    assert_ne!(snapshots_a, snapshots_b);
}
