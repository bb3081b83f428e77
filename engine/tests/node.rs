//! The node's book management: symbols are validated and two books never share one stream.

use ubdcc_engine::{BookSpec, Exchange, Node, NodeConfig, NodeError};

fn spec(symbol: &str) -> BookSpec {
    BookSpec {
        exchange: Exchange::BinanceCom,
        symbol: symbol.to_owned(),
        update_interval_ms: None,
        refresh_interval: None,
        record: false,
    }
}

#[tokio::test]
async fn books_are_validated_and_never_share_a_stream() {
    let mut config = NodeConfig::new(format!("node{}", std::process::id()), "dcn");
    // Nothing listens here: the books stay starting, which is all this test needs.
    config.endpoints =
        ubdcc_engine::EndpointOverrides::parse(["binance.com=http://127.0.0.1:9"]).unwrap();
    config.max_books = 8;
    let (node, handle, commands) = Node::start(config).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(node.run(commands, async move {
        stopped.await.ok();
    }));

    handle.add(spec("BTCUSDT")).await.unwrap();
    assert!(matches!(
        handle.add(spec("BTCUSDT")).await,
        Err(NodeError::Exists { .. })
    ));
    let error = handle.add(spec("btcusdt")).await.unwrap_err();
    assert!(
        matches!(error, NodeError::StreamTaken { ref other, .. } if other == "BTCUSDT"),
        "{error}"
    );
    for bad in ["", "BTC\"USDT", "BTC USDT", &"X".repeat(49)] {
        assert!(
            matches!(
                handle.add(spec(bad)).await,
                Err(NodeError::InvalidSymbol(_))
            ),
            "{bad:?}"
        );
    }
    let mut with_interval = spec("ETHUSDT");
    with_interval.update_interval_ms = Some(250);
    assert!(
        matches!(handle.add(with_interval).await, Err(NodeError::Exchange(_))),
        "spot has no 250 ms stream"
    );
    assert_eq!(handle.list().await.unwrap().len(), 1);

    handle
        .remove(Exchange::BinanceCom, "BTCUSDT")
        .await
        .unwrap();
    assert!(matches!(
        handle.remove(Exchange::BinanceCom, "BTCUSDT").await,
        Err(NodeError::NotFound { .. })
    ));
    // The stream is free again.
    handle.add(spec("btcusdt")).await.unwrap();
    stop.send(()).ok();
    running.await.unwrap().unwrap();
}
